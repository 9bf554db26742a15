//! Edge cases with defined behaviour: ratios 0 and 1, all-background maps, a region
//! absent from a sample or from the whole batch, invalid calls, and the batch API.

mod common;

use common::{one_px_regions, ones};
use fsvfm_masking::{
    LabelMap, MaskError, MaskKey, MaskParams, Masker, PatchGrid, PatchRegions, Region, SampleMask,
    Strategy, SyntheticFace, batch_region, mask_batch, mask_label_maps, mask_sample, masked_count,
};

fn face_regions() -> PatchRegions {
    let map = SyntheticFace::default().render(224, 224).unwrap();
    PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap()
}

#[test]
fn ratio_zero_masks_nothing_and_ratio_one_masks_everything() {
    let regions = face_regions();
    for strategy in Strategy::ALL {
        for key in 0..4 {
            let key = MaskKey::new(key, 0, 0);
            let zero = mask_batch(
                std::slice::from_ref(&regions),
                &MaskParams::new(strategy, 0.0),
                key,
            )
            .unwrap();
            assert!(zero.mask().iter().all(|&m| m == 0), "{strategy}");
            assert!(!zero.has_covered_region(), "{strategy}");

            let one = mask_batch(
                std::slice::from_ref(&regions),
                &MaskParams::new(strategy, 1.0),
                key,
            )
            .unwrap();
            assert!(one.mask().iter().all(|&m| m == 1), "{strategy}");
            match one.region() {
                // Everything is masked, so the covered region is exactly the region's patches.
                Some(r) => assert_eq!(one.region_mask(), regions.region_mask(r).as_slice()),
                None => assert!(!one.has_covered_region()),
            }
        }
    }
}

#[test]
fn all_background_map_gets_exact_counts_and_no_covered_region() {
    let map = LabelMap::from_fn(224, 224, |_, _| 0).unwrap();
    let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT).unwrap();
    for strategy in Strategy::ALL {
        for key in 0..8 {
            let b = mask_batch(
                std::slice::from_ref(&regions),
                &MaskParams::new(strategy, 0.75),
                MaskKey::new(key, 1, 2),
            )
            .unwrap();
            assert_eq!(ones(b.mask()).len(), 147, "{strategy}");
            assert!(!b.has_covered_region(), "{strategy}");
            assert_eq!(b.covered_patch_count(), 0);
        }
    }
}

#[test]
fn region_absent_in_one_sample_or_in_the_whole_batch() {
    let face = face_regions();
    let bald = SyntheticFace {
        hairline: -2.0, // no hair at all
        ..SyntheticFace::default()
    }
    .render(224, 224)
    .unwrap();
    let bald = PatchRegions::from_label_map(&bald, PatchGrid::DEFAULT).unwrap();
    assert!(bald.region(Region::Hair).is_empty());

    let params = MaskParams::new(Strategy::CrfrP, 0.75).with_region(Region::Hair);
    let b = mask_batch(
        &[face.clone(), bald.clone()],
        &params,
        MaskKey::new(1, 0, 0),
    )
    .unwrap();
    assert!(b.has_covered_region());
    assert_eq!(b.samples_with_region(), 1);
    assert_eq!(b.covered_patch_count(), face.region(Region::Hair).count());
    assert!(b.region_mask_row(1).unwrap().iter().all(|&v| v == 0));
    assert_eq!(
        ones(b.mask_row(1).unwrap()).len(),
        147,
        "absent region still gets 147 masked"
    );

    // Absent in every sample: L_rec^fr would be 0/0; the caller can see it.
    let b = mask_batch(&[bald.clone(), bald], &params, MaskKey::new(1, 0, 0)).unwrap();
    assert!(!b.has_covered_region());
    assert_eq!(b.samples_with_region(), 0);
    assert_eq!(b.covered_patch_count(), 0);
    assert!(b.mask().iter().filter(|&&m| m == 1).count() == 2 * 147);
}

#[test]
fn batch_region_is_one_of_the_first_six_and_all_six_occur() {
    let mut counts = [0u32; 8];
    for step in 0..600 {
        let r = batch_region(&MaskParams::default(), MaskKey::new(9, 0, step))
            .unwrap()
            .unwrap();
        counts[r.index()] += 1;
    }
    assert_eq!(counts[Region::Skin.index()], 0);
    assert_eq!(counts[Region::Background.index()], 0);
    assert!(
        counts[..6].iter().all(|&c| (60..140).contains(&c)),
        "{counts:?}"
    );
    // Non-covering strategies have no region.
    assert_eq!(
        batch_region(&MaskParams::new(Strategy::Frp, 0.75), MaskKey::default()).unwrap(),
        None
    );
}

#[test]
fn one_region_per_batch() {
    let regions = vec![face_regions(); 8];
    for step in 0..20 {
        let b = mask_batch(&regions, &MaskParams::default(), MaskKey::new(3, 0, step)).unwrap();
        let r = b.region().unwrap();
        assert_eq!(
            Some(r),
            batch_region(&MaskParams::default(), MaskKey::new(3, 0, step)).unwrap()
        );
        for (i, reg) in regions.iter().enumerate() {
            // Every sample's region mask is that one region (non-extreme on this face).
            assert!(!b.is_extreme(i));
            assert_eq!(b.region_mask_row(i).unwrap(), reg.region_mask(r).as_slice());
        }
    }
}

#[test]
fn forced_region_may_be_any_group_for_covering_strategies() {
    let regions = face_regions();
    for r in Region::ALL {
        let b = mask_batch(
            std::slice::from_ref(&regions),
            &MaskParams::new(Strategy::CrfrP, 0.75).with_region(r),
            MaskKey::from_seed(5),
        )
        .unwrap();
        assert_eq!(b.region(), Some(r));
        assert_eq!(ones(b.mask()).len(), 147);
        // Covering skin or background exceeds the budget on this face: extreme branch.
        if regions.region(r).count() >= 147 {
            assert!(b.is_extreme(0));
            assert_eq!(b.region_mask(), b.mask());
        } else {
            assert_eq!(b.region_mask(), regions.region_mask(r).as_slice());
        }
    }
}

#[test]
fn invalid_calls_are_errors() {
    let regions = face_regions();
    let one = std::slice::from_ref(&regions);
    let key = MaskKey::default();
    for strategy in [Strategy::Random, Strategy::FaskingI, Strategy::Frp] {
        assert!(matches!(
            mask_batch(one, &MaskParams::new(strategy, 0.75).with_region(Region::Eyes), key),
            Err(MaskError::RegionNotApplicable(s)) if s == strategy
        ));
    }
    for ratio in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            mask_batch(one, &MaskParams::new(Strategy::CrfrP, ratio), key),
            Err(MaskError::InvalidRatio(_))
        ));
    }
    assert!(matches!(
        mask_batch(&[], &MaskParams::default(), key),
        Err(MaskError::EmptyBatch)
    ));
    let small = one_px_regions(&["0000", "1111", "2345", "6hh7"]);
    assert!(matches!(
        mask_batch(&[regions, small], &MaskParams::default(), key),
        Err(MaskError::GridMismatch { index: 1, .. })
    ));
}

#[test]
fn json_record_has_the_cli_shape() {
    let regions = face_regions();
    let params = MaskParams::new(Strategy::CrfrP, 0.75).with_region(Region::Eyes);
    let s = mask_sample(&regions, &params, 7).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    let obj = json.as_object().unwrap();
    assert_eq!(obj.len(), 3);
    assert_eq!(obj["region"], "eyes");
    assert_eq!(obj["mask"].as_array().unwrap().len(), 196);
    assert_eq!(obj["region_mask"].as_array().unwrap().len(), 196);
    assert_eq!(
        obj["mask"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| **v == 1)
            .count(),
        147
    );
    let back: SampleMask = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);

    let r = mask_sample(&regions, &MaskParams::new(Strategy::Random, 0.75), 7).unwrap();
    assert_eq!(
        serde_json::to_value(&r).unwrap()["region"],
        serde_json::Value::Null
    );
}

#[test]
fn masks_from_label_maps_and_reused_buffers_agree() {
    let maps: Vec<LabelMap> = (0..3)
        .map(|i| {
            SyntheticFace {
                center: (0.45 + 0.05 * i as f32, 0.55),
                ..SyntheticFace::default()
            }
            .render(224, 224)
            .unwrap()
        })
        .collect();
    let params = MaskParams::default();
    let key = MaskKey::new(11, 2, 5);
    let a = mask_label_maps(&maps, PatchGrid::DEFAULT, &params, key).unwrap();
    let regions: Vec<_> = maps
        .iter()
        .map(|m| PatchRegions::from_label_map(m, PatchGrid::DEFAULT).unwrap())
        .collect();
    // A reused masker and output buffer (after a differently shaped batch) gives the same result.
    let mut masker = Masker::new();
    let mut out = masker
        .mask_batch(
            &[one_px_regions(&["01", "h1"])],
            &MaskParams::new(Strategy::Frp, 0.5),
            key,
        )
        .unwrap();
    masker
        .mask_batch_into(&regions, &params, key, &mut out)
        .unwrap();
    assert_eq!(out, a);
    assert_eq!((a.num_samples(), a.num_patches()), (3, 196));
    assert_eq!(a.mask().len(), 3 * 196);
    assert!(a.mask_row(3).is_none() && a.sample(3).is_none() && !a.is_extreme(3));
}

#[test]
fn non_dividing_grid_masks_have_exact_counts() {
    let map = SyntheticFace::default().render(225, 225).unwrap();
    let grid = PatchGrid::DEFAULT;
    for strategy in Strategy::ALL {
        let b = mask_label_maps(
            std::slice::from_ref(&map),
            grid,
            &MaskParams::new(strategy, 0.6),
            MaskKey::from_seed(1),
        )
        .unwrap();
        // int(0.6 * 196) = int(117.6) = 117.
        assert_eq!(ones(b.mask()).len(), 117);
        assert_eq!(masked_count(0.6, 196).unwrap(), 117);
    }
}
