//! Patch masks on the host: which patches the encoder sees, and the index tables that shuffle
//! tokens in and out (spec §1.1 steps 2–3).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ModelError;

/// A binary patch mask `[N, L]`, **1 = masked (removed)**, 0 = visible, as MAE and the official code.
///
/// Every row must hide the same number of patches, since the encoder runs on a dense
/// `[N, 1 + K, D]` batch with `K = L − masked` (CRFR-P always masks exactly `int(ratio·L)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchMask {
    n: usize,
    l: usize,
    data: Vec<u8>,
    visible: usize,
}

impl PatchMask {
    /// Builds a mask from row-major `[n, l]` values in {0, 1}.
    pub fn new(n: usize, l: usize, data: Vec<u8>) -> Result<Self, ModelError> {
        if data.len() != n * l {
            return Err(ModelError::Mask(format!(
                "mask has {} values, expected N·L = {n}·{l}",
                data.len()
            )));
        }
        if let Some(v) = data.iter().find(|&&v| v > 1) {
            return Err(ModelError::Mask(format!(
                "mask values must be 0 or 1, found {v}"
            )));
        }
        let visible_of = |row: &[u8]| row.iter().filter(|&&v| v == 0).count();
        let visible = data.chunks(l.max(1)).next().map_or(l, visible_of);
        for (i, row) in data.chunks(l.max(1)).enumerate() {
            if visible_of(row) != visible {
                return Err(ModelError::Mask(format!(
                    "row {i} keeps {} patches but row 0 keeps {visible}: every sample must keep the same number",
                    visible_of(row)
                )));
            }
        }
        if visible == 0 {
            return Err(ModelError::Mask(
                "the mask hides every patch: the encoder needs at least one".into(),
            ));
        }
        Ok(Self {
            n,
            l,
            data,
            visible,
        })
    }

    /// A mask that hides nothing (the target network's full view).
    pub fn none(n: usize, l: usize) -> Self {
        Self {
            n,
            l,
            data: vec![0; n * l],
            visible: l,
        }
    }

    /// `(N, L)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.l)
    }

    /// Visible patches per sample, K.
    pub fn visible(&self) -> usize {
        self.visible
    }

    /// The row-major `[N, L]` values.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// `ids_shuffle` of the official code, per row: visible patches first, then masked ones, each
    /// in ascending patch order (`argsort` of a 0/1 mask; the order inside each group does not
    /// change the model output, which is permutation-equivariant there).
    fn shuffle_row(row: &[u8]) -> impl Iterator<Item = usize> + '_ {
        let visible = row
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == 0)
            .map(|(i, _)| i);
        let masked = row
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == 1)
            .map(|(i, _)| i);
        visible.chain(masked)
    }

    /// Indices of the visible patches `[N, K]`, as `ids_shuffle[:, :K]`.
    pub fn keep_indices(&self) -> Vec<i64> {
        self.data
            .chunks(self.l)
            .flat_map(|row| Self::shuffle_row(row).take(self.visible).map(|i| i as i64))
            .collect()
    }

    /// `ids_restore [N, L]`: position of each patch in the shuffled sequence (`argsort(ids_shuffle)`).
    pub fn restore_indices(&self) -> Vec<i64> {
        let mut out = vec![0i64; self.n * self.l];
        for (row, dst) in self.data.chunks(self.l).zip(out.chunks_mut(self.l)) {
            for (pos, patch) in Self::shuffle_row(row).enumerate() {
                dst[patch] = pos as i64;
            }
        }
        out
    }

    /// The mask as a float tensor `[N, L]` (1.0 = masked), for the losses.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2> {
        let v: Vec<f32> = self.data.iter().map(|&b| f32::from(b)).collect();
        Tensor::from_data(TensorData::new(v, [self.n, self.l]), device)
    }

    /// `[N, K, D]` gather indices for the visible tokens.
    pub(crate) fn keep_tensor(&self, d: usize, device: &Device) -> Tensor<3, Int> {
        let idx = Tensor::<2, Int>::from_data(
            TensorData::new(self.keep_indices(), [self.n, self.visible]),
            device,
        );
        idx.unsqueeze_dim::<3>(2).repeat_dim(2, d)
    }

    /// `[N, L, D]` gather indices that un-shuffle `[visible; mask tokens]` back to patch order.
    pub(crate) fn restore_tensor(&self, d: usize, device: &Device) -> Tensor<3, Int> {
        let idx = Tensor::<2, Int>::from_data(
            TensorData::new(self.restore_indices(), [self.n, self.l]),
            device,
        );
        idx.unsqueeze_dim::<3>(2).repeat_dim(2, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_argsort_of_the_mask() {
        // Row 0 keeps patches 1 and 3; row 1 keeps 0 and 2.
        let m = PatchMask::new(2, 4, vec![1, 0, 1, 0, 0, 1, 0, 1]).unwrap();
        assert_eq!(m.visible(), 2);
        assert_eq!(m.keep_indices(), vec![1, 3, 0, 2]);
        // ids_shuffle row 0 = [1, 3, 0, 2] → ids_restore = [2, 0, 3, 1].
        assert_eq!(m.restore_indices(), vec![2, 0, 3, 1, 0, 2, 1, 3]);
    }

    #[test]
    fn bad_masks_are_rejected() {
        assert!(PatchMask::new(1, 4, vec![0, 1]).is_err());
        assert!(PatchMask::new(1, 2, vec![0, 2]).is_err());
        assert!(
            PatchMask::new(2, 2, vec![0, 1, 0, 0])
                .unwrap_err()
                .to_string()
                .contains("same number")
        );
        assert!(PatchMask::new(1, 2, vec![1, 1]).is_err());
    }
}
