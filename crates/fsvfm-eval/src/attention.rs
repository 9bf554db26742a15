//! The papers' analyses of an encoder's attention (FS-VFM Fig. 4, after the MIM literature's
//! public analysis code): the **mean attention distance** and the **head-diversity KL
//! divergence**, per block and head, from the attention probabilities of each block.
//!
//! For one block with attention `A [B, H, T, T]` (softmax of the scaled `q·kᵀ`, `T = 1 + L`):
//! - `P = A[:, :, 1:, 1:]`, the class token neither as query nor as key, each row renormalised
//!   to sum 1;
//! - `D[i, j] = patch_size · ‖(r_i, c_i) − (r_j, c_j)‖₂` on the row-major patch grid;
//! - `MAD[h] = mean over images b and queries i of Σ_j P[b, h, i, j] · D[i, j]` (pixels);
//! - `KL[h] = mean over b, i and the heads j ≠ h of
//!   Σ_k P[b, h, i, k] · (ln(P[b, h, i, k] + 1e-10) − ln(P[b, j, i, k] + 1e-10))` (nats; 0 for a
//!   one-head model, which has no other head).
//!
//! A large MAD means a head looks far across the face (global), a small one near the query
//! (local); a large KL means the heads of a block attend differently (diverse).

use serde::Serialize;

use crate::EvalError;

/// The ε inside the logarithms of the KL divergence.
const KL_EPS: f64 = 1e-10;

/// Mean attention distance and head-diversity KL per block and head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionStats {
    /// Pixels: `[blocks][heads]`.
    pub mean_attention_distance: Vec<Vec<f64>>,
    /// Nats: `[blocks][heads]`.
    pub kl_divergence: Vec<Vec<f64>>,
    /// Blocks.
    pub blocks: usize,
    /// Heads per block.
    pub heads: usize,
    /// Images the means are over.
    pub images: usize,
}

impl AttentionStats {
    /// The mean over heads of block `b`'s values in `per_head` (one of the two fields).
    pub fn block_mean(per_head: &[Vec<f64>], b: usize) -> f64 {
        let row = &per_head[b];
        row.iter().sum::<f64>() / row.len().max(1) as f64
    }
}

/// Accumulates [`AttentionStats`] over batches of images, block by block.
#[derive(Debug, Clone)]
pub struct AttentionAccumulator {
    heads: usize,
    /// `D[i][j]`, `L × L`.
    distance: Vec<f64>,
    mad: Vec<Vec<f64>>,
    kl: Vec<Vec<f64>>,
    /// Images added to each block.
    images: Vec<usize>,
}

impl AttentionAccumulator {
    /// For `blocks` blocks of `heads` heads over a `rows × cols` patch grid of `patch_size`-pixel
    /// patches.
    pub fn new(
        blocks: usize,
        heads: usize,
        rows: usize,
        cols: usize,
        patch_size: usize,
    ) -> Result<Self, EvalError> {
        if blocks == 0 || heads == 0 || rows == 0 || cols == 0 || patch_size == 0 {
            return Err(EvalError::InvalidArgument(format!(
                "attention statistics need blocks, heads, grid and patch size ≥ 1 (got {blocks} \
                 blocks, {heads} heads, a {rows}x{cols} grid, patch {patch_size})"
            )));
        }
        let l = rows * cols;
        let mut distance = vec![0.0; l * l];
        for i in 0..l {
            for j in 0..l {
                let dr = (i / cols) as f64 - (j / cols) as f64;
                let dc = (i % cols) as f64 - (j % cols) as f64;
                distance[i * l + j] = patch_size as f64 * (dr * dr + dc * dc).sqrt();
            }
        }
        Ok(Self {
            heads,
            distance,
            mad: vec![vec![0.0; heads]; blocks],
            kl: vec![vec![0.0; heads]; blocks],
            images: vec![0; blocks],
        })
    }

    fn patches(&self) -> usize {
        self.distance.len().isqrt()
    }

    /// Adds block `block`'s attention of `n` images: `probs` is `[n, H, T, T]` row-major with
    /// `T = 1 + L` (class token first).
    pub fn add(&mut self, block: usize, probs: &[f32], n: usize) -> Result<(), EvalError> {
        let (h, l) = (self.heads, self.patches());
        let t = l + 1;
        if block >= self.mad.len() {
            return Err(EvalError::InvalidArgument(format!(
                "block {block} of a {}-block model",
                self.mad.len()
            )));
        }
        if probs.len() != n * h * t * t {
            return Err(EvalError::InvalidArgument(format!(
                "attention of {n} images with {h} heads over {t} tokens has {} values, got {}",
                n * h * t * t,
                probs.len()
            )));
        }
        // P rows for one image and head: `[L, L]`, renormalised without the class token.
        let mut p = vec![0.0f64; h * l * l];
        for b in 0..n {
            for head in 0..h {
                let a = &probs[(b * h + head) * t * t..(b * h + head + 1) * t * t];
                for i in 0..l {
                    let row = &a[(1 + i) * t + 1..(2 + i) * t];
                    let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
                    let out = &mut p[(head * l + i) * l..(head * l + i + 1) * l];
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = if sum > 0.0 { f64::from(v) / sum } else { 0.0 };
                    }
                }
            }
            for head in 0..h {
                let mut mad = 0.0;
                let mut kl = 0.0;
                for i in 0..l {
                    let ph = &p[(head * l + i) * l..(head * l + i + 1) * l];
                    mad += ph
                        .iter()
                        .zip(&self.distance[i * l..(i + 1) * l])
                        .map(|(a, d)| a * d)
                        .sum::<f64>();
                    for other in (0..h).filter(|&o| o != head) {
                        let po = &p[(other * l + i) * l..(other * l + i + 1) * l];
                        kl += ph
                            .iter()
                            .zip(po)
                            .map(|(&a, &b)| a * ((a + KL_EPS).ln() - (b + KL_EPS).ln()))
                            .sum::<f64>();
                    }
                }
                self.mad[block][head] += mad / l as f64;
                if h > 1 {
                    self.kl[block][head] += kl / (l * (h - 1)) as f64;
                }
            }
        }
        self.images[block] += n;
        Ok(())
    }

    /// The means so far; an error when a block has no images or blocks have different counts.
    pub fn finish(&self) -> Result<AttentionStats, EvalError> {
        let n = self.images[0];
        if n == 0 || self.images.iter().any(|&k| k != n) {
            return Err(EvalError::InvalidArgument(format!(
                "attention statistics need the same images in every block (got {:?})",
                self.images
            )));
        }
        let mean = |v: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
            v.iter()
                .map(|r| r.iter().map(|x| x / n as f64).collect())
                .collect()
        };
        Ok(AttentionStats {
            mean_attention_distance: mean(&self.mad),
            kl_divergence: mean(&self.kl),
            blocks: self.mad.len(),
            heads: self.heads,
            images: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One image, one block, two heads on a 1×2 grid (T = 3), by hand.
    #[test]
    fn two_patches_by_hand() {
        let mut acc = AttentionAccumulator::new(1, 2, 1, 2, 16).unwrap();
        // Head 0: each patch looks only at itself (distance 0). Head 1: each patch splits 50/50
        // (after dropping the class token's 0.5 share the rows renormalise to [0.5, 0.5]).
        #[rustfmt::skip]
        let probs = [
            // head 0: rows cls, p0, p1
            1.0, 0.0, 0.0,
            0.0, 1.0, 0.0,
            0.0, 0.0, 1.0,
            // head 1
            1.0, 0.0, 0.0,
            0.5, 0.25, 0.25,
            0.5, 0.25, 0.25,
        ];
        acc.add(0, &probs, 1).unwrap();
        let s = acc.finish().unwrap();
        assert_eq!(s.mean_attention_distance, vec![vec![0.0, 8.0]]);
        // KL(head0 ‖ head1) per row = 1·(ln(1+ε) − ln(0.5+ε)) ≈ ln 2; KL(head1 ‖ head0) per row
        // = 0.5·(ln 0.5 − ln(1)) + 0.5·(ln 0.5 − ln ε) ≈ 0.5·(ln 0.5 + ln 0.5) − 0.5·ln ε.
        let ln2 = std::f64::consts::LN_2;
        let want1 = 0.5 * ((0.5f64 + 1e-10).ln() - (1.0f64 + 1e-10).ln())
            + 0.5 * ((0.5f64 + 1e-10).ln() - (1e-10f64).ln());
        assert!(
            (s.kl_divergence[0][0] - ln2).abs() < 1e-9,
            "{:?}",
            s.kl_divergence
        );
        assert!(
            (s.kl_divergence[0][1] - want1).abs() < 1e-9,
            "{:?}",
            s.kl_divergence
        );
    }

    #[test]
    fn shapes_and_counts_are_checked() {
        let mut acc = AttentionAccumulator::new(2, 2, 2, 2, 8).unwrap();
        assert!(acc.add(0, &[0.0; 3], 1).is_err());
        assert!(acc.add(2, &[0.0; 2 * 25], 1).is_err());
        acc.add(0, &[0.04; 2 * 25], 1).unwrap();
        // Block 1 has no image yet.
        assert!(acc.finish().is_err());
        assert!(AttentionAccumulator::new(1, 0, 2, 2, 8).is_err());
    }
}
