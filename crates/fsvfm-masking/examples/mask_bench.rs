//! Masks per second for batches of 256 CRFR-P masks on 14×14 (from precomputed
//! patch regions), with one reused [`Masker`] and output buffer, for every strategy;
//! plus the cost of turning one 224×224 label map into patch regions.
//!
//! ```text
//! cargo run --release --example mask_bench
//! ```

use std::time::Instant;

use fsvfm_masking::{
    BatchMasks, MaskKey, MaskParams, Masker, PatchGrid, PatchRegions, Strategy, SyntheticFace,
};

fn main() -> Result<(), fsvfm_masking::MaskError> {
    const BATCH: usize = 256;
    // A batch of slightly different faces so that region sizes vary per sample.
    let regions = (0..BATCH)
        .map(|i| {
            let t = i as f32 / BATCH as f32;
            let face = SyntheticFace {
                center: (0.45 + 0.1 * t, 0.5 + 0.1 * (1.0 - t)),
                radii: (0.28 + 0.08 * t, 0.36 + 0.08 * t),
                ..SyntheticFace::default()
            };
            PatchRegions::from_label_map(&face.render(224, 224)?, PatchGrid::DEFAULT)
        })
        .collect::<Result<Vec<_>, _>>()?;

    // The per-sample pre-processing: 224×224 label map → 14×14 patch regions.
    let map = SyntheticFace::default().render(224, 224)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < 0.5 {
        std::hint::black_box(PatchRegions::from_label_map(&map, PatchGrid::DEFAULT)?);
        n += 1;
    }
    println!(
        "label map 224x224 -> regions: {:.0} maps/s",
        n as f64 / start.elapsed().as_secs_f64()
    );

    for strategy in Strategy::ALL {
        let params = MaskParams::new(strategy, 0.75);
        let mut masker = Masker::new();
        let mut out = BatchMasks::new();
        // Warm up, then time for about a second.
        for step in 0..20 {
            masker.mask_batch_into(&regions, &params, MaskKey::new(0, 0, step), &mut out)?;
        }
        let start = Instant::now();
        let mut batches = 0u64;
        let mut checksum = 0usize;
        while start.elapsed().as_secs_f64() < 1.0 {
            masker.mask_batch_into(&regions, &params, MaskKey::new(1, 0, batches), &mut out)?;
            checksum += out.covered_patch_count();
            batches += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let masks = batches as f64 * BATCH as f64;
        println!(
            "{strategy:>9}: {:>10.0} masks/s  ({:.1} µs per batch of {BATCH}; checksum {checksum})",
            masks / secs,
            secs / batches as f64 * 1e6
        );
    }
    Ok(())
}
