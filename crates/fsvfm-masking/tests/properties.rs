//! Property tests over random label maps and random synthetic faces: exact counts,
//! covered region fully masked (or the extreme branch), per-group proportions within
//! rounding, no unmasking of the covered region, determinism and sample independence.

use fsvfm_masking::{
    BatchMasks, LabelMap, MaskKey, MaskParams, PatchGrid, PatchRegions, PatchSet, Region,
    Strategy as MaskStrategy, SyntheticFace, mask_batch, masked_count,
};
use proptest::prelude::*;

/// A random label map with its grid: 1..=8 × 1..=8 patches of 1..=4 pixels, plus up
/// to 3 leftover pixels per axis (non-dividing grids). Labels are uniform or drawn
/// from a small per-map palette, so that some regions are large and some absent.
fn random_map() -> impl Strategy<Value = (LabelMap, PatchGrid)> {
    (
        1usize..=8,
        1usize..=8,
        1usize..=4,
        0usize..=3,
        0usize..=3,
        prop::collection::vec(0u8..=10, 1..=4),
    )
        .prop_flat_map(|(gr, gc, cell, er, ec, palette)| {
            let (h, w) = (gr * cell + er, gc * cell + ec);
            let h = h.max(gr);
            let w = w.max(gc);
            (
                Just((gr, gc, h, w)),
                prop::collection::vec(
                    prop_oneof![3 => prop::sample::select(palette), 1 => 0u8..=10],
                    h * w,
                ),
            )
        })
        .prop_map(|((gr, gc, h, w), labels)| {
            (
                LabelMap::new(h, w, labels).unwrap(),
                PatchGrid::new(gr, gc).unwrap(),
            )
        })
}

/// A random synthetic face on a 14×14 grid (map 56..=230 pixels, often non-dividing).
fn face_map() -> impl Strategy<Value = (LabelMap, PatchGrid)> {
    (
        0.3f32..0.7,
        0.35f32..0.7,
        0.15f32..0.45,
        0.2f32..0.5,
        -1.2f32..-0.1,
        56usize..=230,
    )
        .prop_map(|(cx, cy, rx, ry, hairline, size)| {
            let face = SyntheticFace {
                center: (cx, cy),
                radii: (rx, ry),
                hairline,
                ..SyntheticFace::default()
            };
            (face.render(size, size).unwrap(), PatchGrid::DEFAULT)
        })
}

fn any_map() -> impl Strategy<Value = (LabelMap, PatchGrid)> {
    prop_oneof![random_map(), face_map()]
}

fn params() -> impl Strategy<Value = MaskParams> {
    (
        prop::sample::select(MaskStrategy::ALL.to_vec()),
        prop_oneof![Just(0.0), Just(0.75), Just(1.0), 0.0f64..=1.0],
        prop::option::of(prop::sample::select(Region::ALL.to_vec())),
    )
        .prop_map(|(strategy, ratio, region)| MaskParams {
            strategy,
            ratio,
            region: region.filter(|_| strategy.covers_region()),
        })
}

fn key() -> impl Strategy<Value = MaskKey> {
    (any::<u64>(), 0u64..1000, 0u64..100_000).prop_map(|(s, e, t)| MaskKey::new(s, e, t))
}

fn set_of(row: &[u8]) -> PatchSet {
    PatchSet::from_mask(row)
}

fn subset(a: &PatchSet, b: &PatchSet) -> bool {
    a.iter().all(|p| b.contains(p))
}

/// Checks one sample against the spec's rules (§2.1, §2.2). The proportional oracle
/// recomputes the official per-group amounts from the region sets: with
/// `ratio = n / (P − |FR|)` in f32, group `g` gets `x_g = round_half_even(|cand_g|·ratio)`
/// where `cand_g` excludes patches of earlier groups; the fix-up then moves the total
/// by `d = K − |FR| − Σ x_g`, only ever in the direction of `d`.
fn check_sample(
    regions: &PatchRegions,
    b: &BatchMasks,
    i: usize,
    params: &MaskParams,
) -> Result<(), TestCaseError> {
    let p = regions.num_patches();
    let k = masked_count(params.ratio, p).unwrap();
    let mask = b.mask_row(i).unwrap();
    let rmask = b.region_mask_row(i).unwrap();
    let m = set_of(mask);
    let rm = set_of(rmask);
    prop_assert_eq!(m.count(), k, "exact masked count");
    prop_assert_eq!(
        mask.iter().filter(|&&v| v == 0).count(),
        p - k,
        "visible count"
    );
    prop_assert!(subset(&rm, &m), "region mask must be masked");

    let fr = match b.region() {
        Some(r) => regions.region(r).clone(),
        None => PatchSet::empty(p),
    };
    let f = fr.count();
    if !params.strategy.covers_region() {
        prop_assert!(rm.is_empty());
        prop_assert!(!b.is_extreme(i));
    } else if f < k {
        prop_assert_eq!(&rm, &fr, "region mask = the covered region");
        prop_assert!(subset(&fr, &m), "covered region fully masked");
        prop_assert!(!b.is_extreme(i));
    } else {
        prop_assert_eq!(&rm, &m, "extreme: region mask = image mask");
        prop_assert!(subset(&m, &fr), "extreme: only region patches masked");
        prop_assert_eq!(b.is_extreme(i), f > 0);
    }

    let proportional = matches!(params.strategy, MaskStrategy::CrfrP | MaskStrategy::Frp);
    if proportional && f < k {
        let ratio = (k - f) as f32 / (p - f) as f32;
        let mut covered = fr.clone();
        let mut planned = 0i64;
        let mut diffs = Vec::new();
        for g in Region::ALL {
            if Some(g) == b.region() {
                continue;
            }
            let cand: Vec<usize> = regions
                .region(g)
                .iter()
                .filter(|&q| !covered.contains(q))
                .collect();
            let x = (cand.len() as f32 * ratio).round_ties_even() as i64;
            let got = cand.iter().filter(|&&q| m.contains(q)).count() as i64;
            planned += x;
            diffs.push(got - x);
            let mut mask_cov = covered.to_mask();
            cand.iter().for_each(|&q| mask_cov[q] = 1);
            covered = PatchSet::from_mask(&mask_cov);
        }
        prop_assert_eq!(covered.count(), p, "groups cover every patch");
        let d = k as i64 - f as i64 - planned;
        prop_assert_eq!(diffs.iter().sum::<i64>(), d, "fix-up moves the total by d");
        if d >= 0 {
            prop_assert!(
                diffs.iter().all(|&x| x >= 0),
                "only masking in the fix-up: {:?}",
                diffs
            );
        } else {
            prop_assert!(
                diffs.iter().all(|&x| x <= 0),
                "only unmasking in the fix-up: {:?}",
                diffs
            );
        }
    }

    if params.strategy == MaskStrategy::FaskingI {
        // Background, then skin, are kept visible before any facial part.
        let visible = set_of(&mask.iter().map(|&v| 1 - v).collect::<Vec<_>>());
        let bg = regions.label(0).unwrap();
        let skin = regions.label(1).unwrap();
        let mut bg_skin = bg.to_mask();
        skin.iter().for_each(|q| bg_skin[q] = 1);
        let bg_skin = PatchSet::from_mask(&bg_skin);
        if bg.count() >= p - k {
            prop_assert!(subset(&visible, bg));
        } else if bg_skin.count() >= p - k {
            prop_assert!(subset(&visible, &bg_skin));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn masks_follow_the_spec(maps in prop::collection::vec(any_map(), 1..=3), params in params(), key in key()) {
        // All samples of a batch share the first map's grid.
        let grid = maps[0].1;
        let regions: Vec<PatchRegions> = maps
            .iter()
            .filter_map(|(m, _)| PatchRegions::from_label_map(m, grid).ok())
            .collect();
        let b = mask_batch(&regions, &params, key).unwrap();
        prop_assert_eq!(b.num_samples(), regions.len());
        prop_assert_eq!(b.mask().len(), regions.len() * grid.num_patches());
        prop_assert_eq!(b.region().is_some(), params.strategy.covers_region());
        if let (Some(forced), Some(r)) = (params.region, b.region()) {
            prop_assert_eq!(forced, r);
        }
        for (i, reg) in regions.iter().enumerate() {
            check_sample(reg, &b, i, &params)?;
        }
        prop_assert_eq!(b.has_covered_region(), b.covered_patch_count() > 0);
    }

    #[test]
    fn same_key_same_masks_and_samples_are_independent(
        (a, grid) in face_map(), (c, _) in face_map(), (x, _) in face_map(),
        params in params(), key in key(),
    ) {
        let ra = PatchRegions::from_label_map(&a, grid).unwrap();
        let rc = PatchRegions::from_label_map(&c, grid).unwrap();
        let rx = PatchRegions::from_label_map(&x, grid).unwrap();
        let b1 = mask_batch(&[ra.clone(), rx.clone()], &params, key).unwrap();
        let b2 = mask_batch(&[ra, rx.clone()], &params, key).unwrap();
        prop_assert_eq!(&b1, &b2);
        // Sample 1's masks do not depend on sample 0.
        let b3 = mask_batch(&[rc, rx], &params, key).unwrap();
        prop_assert_eq!(b1.mask_row(1), b3.mask_row(1));
        prop_assert_eq!(b1.region_mask_row(1), b3.region_mask_row(1));
    }
}
