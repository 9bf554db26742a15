//! Helpers shared by the integration tests.
#![allow(dead_code)]

use fsvfm_masking::{LabelMap, PatchGrid, PatchRegions};

/// Builds a label map from rows of characters: `0`–`9` are ids 0–9, `h` is hair (10);
/// spaces and `|` are ignored so rows can be grouped by patch.
pub fn map_from_rows(rows: &[&str]) -> LabelMap {
    let parsed: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| {
            r.chars()
                .filter(|c| !c.is_whitespace() && *c != '|')
                .map(|c| match c {
                    'h' => 10,
                    d => d.to_digit(10).expect("digit or h") as u8,
                })
                .collect()
        })
        .collect();
    let w = parsed[0].len();
    assert!(parsed.iter().all(|r| r.len() == w), "ragged test map");
    LabelMap::new(parsed.len(), w, parsed.concat()).expect("valid test map")
}

/// Patch regions of a map where every pixel is one patch.
pub fn one_px_regions(rows: &[&str]) -> PatchRegions {
    let map = map_from_rows(rows);
    let grid = PatchGrid::new(map.height(), map.width()).unwrap();
    PatchRegions::from_label_map(&map, grid).unwrap()
}

/// Indices of non-zero entries.
pub fn ones(mask: &[u8]) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(i, _)| i)
        .collect()
}

/// Number of entries of `mask` set at the given indices.
pub fn masked_among(mask: &[u8], idx: &[usize]) -> usize {
    idx.iter().filter(|&&i| mask[i] != 0).count()
}
