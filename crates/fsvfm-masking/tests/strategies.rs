//! Hand-computed small cases for each strategy (4×4 grids, P = 16, usually
//! ratio 0.75 → K = 12). Where a strategy is random, the expected value is an
//! invariant worked out by hand from the spec, checked over many keys.

mod common;

use std::collections::BTreeSet;

use common::{map_from_rows, masked_among, one_px_regions, ones};
use fsvfm_masking::{
    BatchMasks, MaskKey, MaskParams, PatchGrid, PatchRegions, Region, Strategy, mask_batch,
};

fn run(regions: &PatchRegions, params: MaskParams, key: u64) -> BatchMasks {
    mask_batch(
        std::slice::from_ref(regions),
        &params,
        MaskKey::new(key, 0, 0),
    )
    .unwrap()
}

fn idx(regions: &PatchRegions, r: Region) -> Vec<usize> {
    regions.region(r).iter().collect()
}

/// CRFR-P covering the eyes (2 patches): n = 12 − 2 = 10, ratio = 10/14.
/// Rounded per group: eyebrows 2·10/14 = 1.43 → 1, nose 0.71 → 1, mouth 2.14 → 2,
/// hair 1.43 → 1, skin 2.86 → 3, background 1.43 → 1; 2 + 9 = 11, so the fix-up
/// masks exactly one more patch outside the eyes.
#[test]
fn crfr_p_proportions_and_positive_fix_up_by_hand() {
    let regions = one_px_regions(&["2345", "6789", "hh11", "1100"]);
    let expected = [
        (Region::Eyebrows, 1usize),
        (Region::Nose, 1),
        (Region::Mouth, 2),
        (Region::Hair, 1),
        (Region::Skin, 3),
        (Region::Background, 1),
    ];
    let params = MaskParams::new(Strategy::CrfrP, 0.75).with_region(Region::Eyes);
    let mut extra_groups = BTreeSet::new();
    for key in 0..100 {
        let b = run(&regions, params, key);
        let mask = b.mask_row(0).unwrap();
        assert_eq!(ones(mask).len(), 12);
        assert_eq!(
            ones(b.region_mask_row(0).unwrap()),
            vec![2, 3],
            "region mask = the eyes"
        );
        assert_eq!(masked_among(mask, &[2, 3]), 2, "eyes fully covered");
        let mut surplus = 0;
        for (g, x) in expected {
            let got = masked_among(mask, &idx(&regions, g));
            assert!(got >= x, "{g}: {got} < {x}");
            if got > x {
                extra_groups.insert(g);
            }
            surplus += got - x;
        }
        assert_eq!(surplus, 1, "fix-up adds exactly one patch");
        assert!(!b.is_extreme(0));
    }
    // The extra patch is uniformly placed, so several groups receive it.
    assert!(extra_groups.len() >= 4, "{extra_groups:?}");
}

/// CRFR-P covering the eyes, where rounding overshoots: ratio = 10/14; eyebrows,
/// nose, mouth, hair, skin have 1 patch each (0.71 → 1), background 9 (6.43 → 6);
/// 2 + 11 = 13, so the fix-up unmasks one patch — never an eye patch.
#[test]
fn crfr_p_negative_fix_up_never_unmasks_the_region() {
    let regions = one_px_regions(&["4526", "7h10", "0000", "0000"]);
    let expected = [
        (Region::Eyebrows, 1usize),
        (Region::Nose, 1),
        (Region::Mouth, 1),
        (Region::Hair, 1),
        (Region::Skin, 1),
        (Region::Background, 6),
    ];
    let params = MaskParams::new(Strategy::CrfrP, 0.75).with_region(Region::Eyes);
    for key in 0..100 {
        let b = run(&regions, params, key);
        let mask = b.mask_row(0).unwrap();
        assert_eq!(ones(mask).len(), 12);
        assert_eq!(masked_among(mask, &[0, 1]), 2, "covered eyes stay masked");
        let deficit: usize = expected
            .iter()
            .map(|&(g, x)| {
                let got = masked_among(mask, &idx(&regions, g));
                assert!(got <= x, "{g}: {got} > {x}");
                x - got
            })
            .sum();
        assert_eq!(deficit, 1, "fix-up removes exactly one patch");
    }
}

/// FRP at 0.75 (ratio 12/16 exactly): eyes 2 → 1.5 → 2, nose 6 → 4.5 → 4, skin 2 →
/// 1.5 → 2, background 6 → 4.5 → 4. Half-to-even gives 12 = K, no fix-up, so the
/// per-group counts are exact for every key (half-up would give 14 and a random fix-up).
#[test]
fn frp_rounds_half_to_even() {
    let regions = one_px_regions(&["4466", "6666", "1100", "0000"]);
    let check = |b: &BatchMasks| {
        let mask = b.mask_row(0).unwrap();
        assert_eq!(masked_among(mask, &idx(&regions, Region::Eyes)), 2);
        assert_eq!(masked_among(mask, &idx(&regions, Region::Nose)), 4);
        assert_eq!(masked_among(mask, &idx(&regions, Region::Skin)), 2);
        assert_eq!(masked_among(mask, &idx(&regions, Region::Background)), 4);
    };
    for key in 0..64 {
        let b = run(&regions, MaskParams::new(Strategy::Frp, 0.75), key);
        check(&b);
        assert!(!b.has_covered_region());
        assert_eq!(b.region(), None);
        // CRFR-P covering an absent region (mouth) reduces to FRP on this sample.
        let c = run(
            &regions,
            MaskParams::new(Strategy::CrfrP, 0.75).with_region(Region::Mouth),
            key,
        );
        check(&c);
        assert!(!c.has_covered_region());
        assert_eq!(c.region(), Some(Region::Mouth));
    }
}

/// First group wins: 4 patches hold eyes+skin, 4 skin only, 8 background (2×2-pixel
/// patches). FRP at 0.5: eyes 4 → 2; skin counts only its 4 skin-only patches → 2;
/// background 8 → 4; total 8 = K. Without the dedup, skin would draw from 8.
#[test]
fn proportional_step_counts_each_patch_in_its_first_group_only() {
    let map = map_from_rows(&[
        "14|14|14|14",
        "11|11|11|11",
        "11|11|11|11",
        "11|11|11|11",
        "00|00|00|00",
        "00|00|00|00",
        "00|00|00|00",
        "00|00|00|00",
    ]);
    let regions = PatchRegions::from_label_map(&map, PatchGrid::new(4, 4).unwrap()).unwrap();
    for key in 0..64 {
        let b = run(&regions, MaskParams::new(Strategy::Frp, 0.5), key);
        let mask = b.mask();
        assert_eq!(masked_among(mask, &[0, 1, 2, 3]), 2);
        assert_eq!(masked_among(mask, &[4, 5, 6, 7]), 2);
        assert_eq!(masked_among(mask, &(8..16).collect::<Vec<_>>()), 4);
    }
}

/// Extreme branch: 13 hair patches ≥ K = 12, so one random hair patch is unmasked
/// and the region mask becomes the image mask.
#[test]
fn crfr_p_extreme_branch() {
    let regions = one_px_regions(&["hhhh", "hhhh", "hhhh", "h100"]);
    let params = MaskParams::new(Strategy::CrfrP, 0.75).with_region(Region::Hair);
    let mut unmasked = BTreeSet::new();
    for key in 0..100 {
        let b = run(&regions, params, key);
        let mask = b.mask_row(0).unwrap();
        assert_eq!(ones(mask).len(), 12);
        assert_eq!(
            masked_among(mask, &[13, 14, 15]),
            0,
            "nothing outside the region is masked"
        );
        assert_eq!(b.region_mask_row(0).unwrap(), mask);
        assert!(b.is_extreme(0));
        unmasked.extend((0..13).filter(|&p| mask[p] == 0));
    }
    assert!(
        unmasked.len() > 6,
        "the unmasked hair patch is random: {unmasked:?}"
    );

    // |FR| = K exactly: the official code also takes the extreme branch (n = 0), masking the
    // region and nothing else.
    let regions = one_px_regions(&["hhhh", "hhhh", "hhhh", "1100"]);
    for strategy in [Strategy::CrfrP, Strategy::CrfrR] {
        let b = run(
            &regions,
            MaskParams::new(strategy, 0.75).with_region(Region::Hair),
            3,
        );
        assert_eq!(ones(b.mask_row(0).unwrap()), (0..12).collect::<Vec<_>>());
        assert_eq!(b.region_mask_row(0).unwrap(), b.mask_row(0).unwrap());
    }
}

/// CRFR-R: the eyes (2) are covered, the other 10 of 14 patches are uniform:
/// each is masked with probability 10/14 ≈ 0.714.
#[test]
fn crfr_r_covers_then_masks_uniformly() {
    let regions = one_px_regions(&["2345", "6789", "hh11", "1100"]);
    let params = MaskParams::new(Strategy::CrfrR, 0.75).with_region(Region::Eyes);
    let mut hits = [0u32; 16];
    let trials = 3000;
    for key in 0..trials {
        let b = run(&regions, params, key);
        let mask = b.mask_row(0).unwrap();
        assert_eq!(ones(mask).len(), 12);
        assert_eq!(ones(b.region_mask_row(0).unwrap()), vec![2, 3]);
        for p in ones(mask) {
            hits[p] += 1;
        }
    }
    assert_eq!(hits[2], trials as u32);
    assert_eq!(hits[3], trials as u32);
    for (p, &h) in hits.iter().enumerate().filter(|(p, _)| *p != 2 && *p != 3) {
        let f = f64::from(h) / trials as f64;
        // sd ≈ 0.008; allow about 5 sd.
        assert!((f - 10.0 / 14.0).abs() < 0.045, "patch {p}: {f}");
    }
}

/// Random: exactly K masked, each patch with probability K/P.
#[test]
fn random_is_uniform_with_exact_count() {
    let regions = one_px_regions(&["0000", "1111", "2345", "6hh7"]);
    let mut hits = [0u32; 16];
    let trials = 3000;
    for key in 0..trials {
        let b = run(&regions, MaskParams::new(Strategy::Random, 0.5), key);
        let mask = b.mask_row(0).unwrap();
        assert_eq!(ones(mask).len(), 8);
        assert!(!b.has_covered_region());
        for p in ones(mask) {
            hits[p] += 1;
        }
    }
    for (p, &h) in hits.iter().enumerate() {
        let f = f64::from(h) / trials as f64;
        assert!((f - 0.5).abs() < 0.045, "patch {p}: {f}");
    }
}

/// Fasking-I keeps background first: with 4 background patches and P − K = 4,
/// the visible set is exactly the background.
#[test]
fn fasking_i_keeps_background_first() {
    let regions = one_px_regions(&["0000", "1111", "2345", "6hh7"]);
    for key in 0..32 {
        let b = run(&regions, MaskParams::new(Strategy::FaskingI, 0.75), key);
        let visible: Vec<usize> = (0..16).filter(|&p| b.mask()[p] == 0).collect();
        assert_eq!(visible, vec![0, 1, 2, 3]);
        assert!(!b.has_covered_region());
    }
    // Background 2 + skin 3 = 5 ≥ 4: trimmed to 4 of those 5; every facial part masked.
    let regions = one_px_regions(&["0011", "1234", "5678", "9hhh"]);
    for key in 0..32 {
        let b = run(&regions, MaskParams::new(Strategy::FaskingI, 0.75), key);
        let visible: Vec<usize> = (0..16).filter(|&p| b.mask()[p] == 0).collect();
        assert_eq!(visible.len(), 4);
        assert!(
            visible.iter().all(|p| [0, 1, 2, 3, 4].contains(p)),
            "{visible:?}"
        );
    }
}

/// After background (1) and skin (2) the next group is random. MARLIN stops after each
/// *label*, so [right brow, right eye] stops after the brow; the hair group (5 patches)
/// overshoots and is trimmed at random.
#[test]
fn fasking_i_stops_label_by_label_in_a_random_group_order() {
    // idx: 0 bg | 1,2 skin | 3 rb | 4 re | 5 lb | 6 le | 7 nose | 8,9,10 mouth | 11..16 hair
    let regions = one_px_regions(&["0112", "4356", "789h", "hhhh"]);
    let outcomes = [
        vec![0, 1, 2, 3], // [2, 4] first: right eyebrow only
        vec![0, 1, 2, 5], // [3, 5] first: left eyebrow only
        vec![0, 1, 2, 7], // nose first
        vec![0, 1, 2, 8], // mouth first: upper lip only
    ];
    let mut seen = [0u32; 5];
    for key in 0..300 {
        let b = run(&regions, MaskParams::new(Strategy::FaskingI, 0.75), key);
        let visible: Vec<usize> = (0..16).filter(|&p| b.mask()[p] == 0).collect();
        assert_eq!(visible.len(), 4);
        if let Some(i) = outcomes.iter().position(|o| *o == visible) {
            seen[i] += 1;
        } else {
            // Hair first: a random 4-subset of background, skin and hair.
            assert!(
                visible
                    .iter()
                    .all(|p| [0, 1, 2, 11, 12, 13, 14, 15].contains(p)),
                "{visible:?}"
            );
            seen[4] += 1;
        }
    }
    // Each first group has probability 1/5.
    assert!(seen.iter().all(|&s| s > 30), "{seen:?}");
}
