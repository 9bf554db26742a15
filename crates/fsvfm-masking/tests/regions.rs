//! Label maps → patch regions: the any-pixel rule, the boundary rule, grids that do
//! not divide the map, and input validation (spec §2).

mod common;

use common::map_from_rows;
use fsvfm_masking::{LabelMap, MaskError, PatchGrid, PatchRegions, Region, SyntheticFace, lapa};

/// 8×8 map on a 4×4 grid: each patch is a 2×2 block (blocks separated by `|`).
fn hand_map() -> LabelMap {
    map_from_rows(&[
        "00|0h|hh|00",
        "00|11|1h|04",
        "11|11|11|00",
        "16|11|11|00",
        "01|22|11|h0",
        "01|11|11|hh",
        "78|91|11|11",
        "11|11|11|11",
    ])
}

fn members(regions: &PatchRegions, r: Region) -> Vec<usize> {
    regions.region(r).iter().collect()
}

#[test]
fn any_pixel_rule_and_groups_on_a_hand_made_map() {
    let regions = PatchRegions::from_label_map(&hand_map(), PatchGrid::new(4, 4).unwrap()).unwrap();
    // Expected sets worked out by hand from the 2×2 blocks above (index = r*4 + c).
    assert_eq!(members(&regions, Region::Eyebrows), vec![9]);
    // One eye pixel among three background pixels is enough (not a majority vote).
    assert_eq!(members(&regions, Region::Eyes), vec![3]);
    assert_eq!(members(&regions, Region::Nose), vec![4]);
    assert_eq!(members(&regions, Region::Mouth), vec![12, 13]);
    assert_eq!(members(&regions, Region::Hair), vec![1, 2, 11]);
    assert_eq!(
        members(&regions, Region::Skin),
        vec![1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15]
    );
    assert_eq!(
        members(&regions, Region::Background),
        vec![0, 1, 3, 7, 8, 11]
    );
    // A patch may belong to several groups: patch 1 holds background, skin and hair.
    assert_eq!(
        regions.label_bits()[1],
        (1 << lapa::BACKGROUND) | (1 << lapa::SKIN) | (1 << lapa::HAIR)
    );
}

#[test]
fn boundary_needs_skin_and_hair_or_background_in_the_same_patch() {
    let regions = PatchRegions::from_label_map(&hand_map(), PatchGrid::new(4, 4).unwrap()).unwrap();
    // 1: skin+hair+bg, 2: skin+hair, 8: skin+bg. Not 11 (hair+bg, no skin),
    // not 3 (bg+eye), not 5 (skin only).
    assert_eq!(members(&regions, Region::Boundary), vec![1, 2, 8]);
    assert!(Region::Boundary.contains_bits((1 << 1) | (1 << 10)));
    assert!(Region::Boundary.contains_bits((1 << 1) | (1 << 0)));
    assert!(!Region::Boundary.contains_bits((1 << 0) | (1 << 10)));
    assert!(!Region::Boundary.contains_bits(1 << 1));
}

#[test]
fn label_bits_round_trip() {
    let map = SyntheticFace::default().render(224, 224).unwrap();
    let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap();
    let again =
        PatchRegions::from_label_bits(PatchGrid::DEFAULT, regions.label_bits().to_vec()).unwrap();
    assert_eq!(regions, again);
    assert!(PatchRegions::from_label_bits(PatchGrid::DEFAULT, vec![1; 195]).is_err());
    let mut bad = vec![1u16; 196];
    bad[7] = 0;
    assert!(matches!(
        PatchRegions::from_label_bits(PatchGrid::DEFAULT, bad.clone()),
        Err(MaskError::InvalidPatchLabels { patch: 7, .. })
    ));
    bad[7] = 1 << 11;
    assert!(PatchRegions::from_label_bits(PatchGrid::DEFAULT, bad).is_err());
}

#[test]
fn divisible_grid_uses_exact_patches() {
    // A single nose pixel at (16, 31) must land in patch (1, 1) of a 16-pixel grid,
    // and at (16, 32) in patch (1, 2).
    for (col, patch) in [(31usize, 15usize), (32, 16)] {
        let map =
            LabelMap::from_fn(224, 224, |r, c| if (r, c) == (16, col) { 6 } else { 1 }).unwrap();
        let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap();
        assert_eq!(members(&regions, Region::Nose), vec![patch]);
    }
}

#[test]
fn non_dividing_grid_partitions_pixels() {
    // 9 pixels into 4 cells: [0,2) [2,4) [4,6) [6,9).
    let map = LabelMap::from_fn(9, 9, |r, c| match (r, c) {
        (8, 8) => 4,
        (2, 2) => 6,
        (1, 1) => 0,
        (5, 5) => 2,
        _ => 1,
    })
    .unwrap();
    let regions = PatchRegions::from_label_map(&map, PatchGrid::new(4, 4).unwrap()).unwrap();
    assert_eq!(members(&regions, Region::Eyes), vec![15]);
    assert_eq!(members(&regions, Region::Nose), vec![5]);
    assert_eq!(members(&regions, Region::Eyebrows), vec![10]);
    assert_eq!(members(&regions, Region::Background), vec![0]);
    assert_eq!(members(&regions, Region::Boundary), vec![0]);

    // 225 pixels into 14 cells: thirteen cells of 16 and a last one of 17.
    for ((r, c), patch) in [
        ((224, 224), 195),
        ((208, 208), 195),
        ((207, 207), 180),
        ((0, 224), 13),
    ] {
        let map = LabelMap::from_fn(225, 225, |y, x| if (y, x) == (r, c) { 6 } else { 1 }).unwrap();
        let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap();
        assert_eq!(
            members(&regions, Region::Nose),
            vec![patch],
            "pixel {r},{c}"
        );
    }
}

#[test]
fn non_square_grids_and_maps() {
    // 4 rows × 6 columns of one-pixel patches; index = r*6 + c.
    let map = LabelMap::from_fn(4, 6, |r, c| if (r, c) == (3, 1) { 9 } else { 0 }).unwrap();
    let regions = PatchRegions::from_label_map(&map, PatchGrid::new(4, 6).unwrap()).unwrap();
    assert_eq!(members(&regions, Region::Mouth), vec![19]);
    // The same map on a 2×3 grid: pixel (3,1) is in cell (1,0) = index 3.
    let regions = PatchRegions::from_label_map(&map, PatchGrid::new(2, 3).unwrap()).unwrap();
    assert_eq!(members(&regions, Region::Mouth), vec![3]);
}

#[test]
fn grid_finer_than_the_map_is_an_error() {
    let map = LabelMap::from_fn(3, 5, |_, _| 1).unwrap();
    assert!(matches!(
        PatchRegions::from_label_map(&map, PatchGrid::new(4, 4).unwrap()),
        Err(MaskError::GridTooFine { .. })
    ));
    assert!(PatchRegions::from_label_map(&map, PatchGrid::new(3, 5).unwrap()).is_ok());
}

#[test]
fn label_map_validation() {
    assert!(matches!(
        LabelMap::new(2, 2, vec![0, 1, 11, 3]),
        Err(MaskError::InvalidLabel {
            value: 11,
            row: 1,
            col: 0
        })
    ));
    assert!(matches!(
        LabelMap::new(0, 4, vec![]),
        Err(MaskError::EmptyMap { .. })
    ));
    assert!(matches!(
        LabelMap::new(2, 2, vec![0; 3]),
        Err(MaskError::BufferSize { .. })
    ));
    let m = LabelMap::new(2, 3, vec![0, 1, 2, 3, 4, 10]).unwrap();
    assert_eq!(m.get(1, 2), Some(10));
    assert_eq!(m.get(2, 0), None);
}

#[test]
fn region_names_round_trip() {
    for r in Region::ALL {
        assert_eq!(r.name().parse::<Region>().unwrap(), r);
        assert_eq!(format!("{r}"), r.name());
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.name())
        );
    }
    assert_eq!("Eyes".parse::<Region>().unwrap(), Region::Eyes);
    assert!(matches!(
        "ears".parse::<Region>(),
        Err(MaskError::UnknownRegion(_))
    ));
    assert_eq!(Region::COVERABLE.to_vec(), Region::ALL[..6].to_vec());
}

#[test]
fn synthetic_face_has_every_group() {
    let map = SyntheticFace::default().render(224, 224).unwrap();
    let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap();
    for l in 0..=10u8 {
        assert!(!regions.label(l).unwrap().is_empty(), "label {l} missing");
    }
    for r in Region::ALL {
        assert!(!regions.region(r).is_empty(), "{r} missing");
    }
    assert!(regions.label(11).is_none());
}
