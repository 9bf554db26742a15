//! Seeded, platform-independent randomness for masks.
//!
//! Every random choice comes from [`ChaCha8Rng`], keyed on `(seed, epoch, step)`
//! so that a training run (and its resume) draws the same masks
//! (ARCHITECTURE.md, "Randomness"). What the output depends on, and nothing else:
//!
//! * the 32-byte ChaCha key from [`key_for`] (SplitMix64 mixing, defined here);
//! * the ChaCha stream id (0 for batch-level choices, `sample + 1` for sample `sample`),
//!   set with `ChaCha8Rng::set_stream`;
//! * `RngCore::next_u32`, whose output `rand_chacha` documents as value-stable
//!   across platforms and versions;
//! * our own `below` (Lemire's multiply-and-reject on `u32`) and Fisher–Yates
//!   helpers. We deliberately avoid `rand`'s `Rng::random_range`, `SliceRandom` and
//!   `seed_from_u64`, whose algorithms have changed between `rand` releases.
//!
//! All sizes are converted to `u32` before drawing, so results do not depend on
//! the width of `usize`.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Domain separator so these keys differ from any other use of the same seed ("fsvmmask").
const DOMAIN: u64 = 0x6673_766d_6d61_736b;
/// SplitMix64 increment (the golden-ratio constant).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SplitMix64 output function (Steele, Lea & Flood 2014).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ChaCha key for `(seed, epoch, step)`.
///
/// `h = mix(seed ^ DOMAIN)`, then `h = mix((h + φ) ^ epoch)`, `h = mix((h + φ) ^ step)`;
/// the key is the little-endian bytes of `mix(h + k·φ)` for `k = 1..=4`.
pub fn key_for(seed: u64, epoch: u64, step: u64) -> [u8; 32] {
    let mut h = mix64(seed ^ DOMAIN);
    h = mix64(h.wrapping_add(GOLDEN) ^ epoch);
    h = mix64(h.wrapping_add(GOLDEN) ^ step);
    let mut key = [0u8; 32];
    for (k, chunk) in key.chunks_exact_mut(8).enumerate() {
        let word = mix64(h.wrapping_add(GOLDEN.wrapping_mul(k as u64 + 1)));
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    key
}

/// The batch-level generator for `(seed, epoch, step)`: ChaCha8 keyed by
/// [`key_for`], stream 0. It draws the covered region of a batch (CRFR-P/CRFR-R).
///
/// Training should key on the global `(seed, epoch, step)` so resumes replay the
/// same masks; the CLI uses `(seed, 0, 0)`.
pub fn rng_for(seed: u64, epoch: u64, step: u64) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(key_for(seed, epoch, step))
}

/// The generator of sample `sample` in the batch of `(seed, epoch, step)`: same key
/// as [`rng_for`], ChaCha stream `sample + 1`.
///
/// Each sample has its own stream, so a sample's mask depends only on its own
/// regions, the batch's region and this key — not on the other samples or on the
/// order in which samples are processed (so it can be computed in parallel).
pub fn rng_for_sample(seed: u64, epoch: u64, step: u64, sample: u64) -> ChaCha8Rng {
    let mut rng = rng_for(seed, epoch, step);
    rng.set_stream(sample.wrapping_add(1));
    rng
}

/// A uniform integer in `0..n` (`n > 0`), unbiased: Lemire's multiply-shift with
/// rejection ("Fast random integer generation in an interval", 2019), on `next_u32`.
pub(crate) fn below(rng: &mut impl RngCore, n: u32) -> u32 {
    debug_assert!(n > 0);
    let mut m = u64::from(rng.next_u32()) * u64::from(n);
    if (m as u32) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * u64::from(n);
        }
    }
    (m >> 32) as u32
}

/// Moves a uniformly random `k`-subset of `items` to `items[..k]` (partial Fisher–Yates).
///
/// Draws `min(k, len − k)` numbers: when more than half are picked it shuffles the
/// complement to the back instead, which is the same distribution with fewer draws.
/// Requires `k <= items.len()`.
pub(crate) fn choose_front(rng: &mut impl RngCore, items: &mut [u32], k: usize) {
    let n = items.len();
    debug_assert!(k <= n);
    if k <= n - k {
        for i in 0..k {
            let j = i + below(rng, (n - i) as u32) as usize;
            items.swap(i, j);
        }
    } else {
        // Pick the n − k excluded items into the back, from the back.
        for i in (k..n).rev() {
            let j = below(rng, (i + 1) as u32) as usize;
            items.swap(i, j);
        }
    }
}

/// Uniformly shuffles `items` (Fisher–Yates, from the back).
pub(crate) fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, (i + 1) as u32) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = rng_for(1, 2, 3);
        let mut hist = [0u32; 7];
        for _ in 0..70_000 {
            hist[below(&mut rng, 7) as usize] += 1;
        }
        // Expected 10 000 each; 5 sigma is about 450.
        assert!(
            hist.iter().all(|&h| (9_500..10_500).contains(&h)),
            "{hist:?}"
        );
    }

    #[test]
    fn choose_front_picks_distinct_items_both_ways() {
        let mut rng = rng_for(0, 0, 0);
        for k in [0, 1, 3, 7, 9, 10] {
            let mut items: Vec<u32> = (0..10).collect();
            choose_front(&mut rng, &mut items, k);
            let mut sorted = items.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..10).collect::<Vec<_>>(),
                "must stay a permutation"
            );
        }
    }

    #[test]
    fn choose_front_is_uniform_over_items() {
        // Each item should land in the chosen 7-of-10 prefix with probability 0.7,
        // exercising the complement branch.
        let mut rng = rng_for(5, 0, 0);
        let mut hits = [0u32; 10];
        for _ in 0..20_000 {
            let mut items: Vec<u32> = (0..10).collect();
            choose_front(&mut rng, &mut items, 7);
            for &i in &items[..7] {
                hits[i as usize] += 1;
            }
        }
        assert!(
            hits.iter().all(|&h| (13_700..14_300).contains(&h)),
            "{hits:?}"
        );
    }

    #[test]
    fn keys_differ_by_each_component_and_streams_differ() {
        let base = key_for(7, 0, 0);
        assert_ne!(base, key_for(8, 0, 0));
        assert_ne!(base, key_for(7, 1, 0));
        assert_ne!(base, key_for(7, 0, 1));
        assert_ne!(key_for(7, 1, 0), key_for(7, 0, 1));
        let a = rng_for_sample(7, 0, 0, 0).next_u64();
        let b = rng_for_sample(7, 0, 0, 1).next_u64();
        let c = rng_for(7, 0, 0).next_u64();
        assert!(a != b && a != c && b != c);
    }
}
