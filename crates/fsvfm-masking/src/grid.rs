//! The patch grid: how a map or image is cut into `rows × cols` patches.

use serde::{Deserialize, Serialize};

use crate::error::{MaskError, Result};

/// A `rows × cols` patch grid. Patch `(r, c)` has index `r * cols + c` (spec §1.1).
///
/// A grid is independent of pixel sizes: [`PatchGrid::cell_bounds`] maps it onto
/// any map or image at least as large as the grid. When the size divides
/// evenly (224 px into 14 cells) every cell is exactly one patch
/// (16 px), which is what the official `F.max_pool2d(kernel_size=16)` sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PatchGrid {
    rows: usize,
    cols: usize,
}

impl PatchGrid {
    /// The FSFM default: 224-pixel input, 16-pixel patches, 14 × 14 = 196 patches.
    pub const DEFAULT: PatchGrid = PatchGrid { rows: 14, cols: 14 };

    /// A `rows × cols` grid.
    ///
    /// # Errors
    /// [`MaskError::InvalidGrid`] if either is zero or `rows * cols` overflows `u32`
    /// (patch indices are kept as `u32` internally).
    pub fn new(rows: usize, cols: usize) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(MaskError::InvalidGrid(format!(
                "{rows}x{cols} has no patches"
            )));
        }
        match rows.checked_mul(cols) {
            Some(p) if p <= u32::MAX as usize => Ok(Self { rows, cols }),
            _ => Err(MaskError::InvalidGrid(format!(
                "{rows}x{cols} is too large"
            ))),
        }
    }

    /// A square `n × n` grid (the CLI's `--grid n`).
    ///
    /// # Errors
    /// As [`PatchGrid::new`].
    pub fn square(n: usize) -> Result<Self> {
        Self::new(n, n)
    }

    /// The grid of a ViT with square `image_size` inputs and `patch_size` patches
    /// (224/16 → 14 × 14, 224/14 → 16 × 16).
    ///
    /// # Errors
    /// [`MaskError::InvalidGrid`] if `patch_size` is zero or does not divide `image_size`
    /// (a ViT's patch embedding would drop the remainder; we refuse rather than guess).
    pub fn for_image(image_size: usize, patch_size: usize) -> Result<Self> {
        if patch_size == 0 || image_size == 0 || !image_size.is_multiple_of(patch_size) {
            return Err(MaskError::InvalidGrid(format!(
                "image size {image_size} is not a positive multiple of patch size {patch_size}"
            )));
        }
        Self::square(image_size / patch_size)
    }

    /// Number of patch rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of patch columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of patches `P = rows * cols` (the `L` of `[N, L]` masks).
    pub fn num_patches(&self) -> usize {
        self.rows * self.cols
    }

    /// Patch index of `(row, col)`: `row * cols + col`.
    pub fn index(&self, row: usize, col: usize) -> usize {
        row * self.cols + col
    }

    /// Pixel range `[start, end)` of cell `i` when `len` pixels are split into `n` cells:
    /// `start = ⌊i·len/n⌋`, `end = ⌊(i+1)·len/n⌋`.
    ///
    /// This partitions the pixels: every pixel lies in exactly one cell, cells differ
    /// in size by at most one pixel, and for `len` divisible by `n` each cell is exactly
    /// `len/n` pixels (the official 16-pixel patches). For example 225 pixels in 14
    /// cells give thirteen 16-pixel cells and a last cell of 17. Needs `len >= n`
    /// for all cells to be non-empty (checked by the callers).
    pub fn cell_bounds(len: usize, n: usize, i: usize) -> (usize, usize) {
        // u128 avoids overflow for any realistic sizes.
        let start = (i as u128 * len as u128 / n as u128) as usize;
        let end = ((i as u128 + 1) * len as u128 / n as u128) as usize;
        (start, end)
    }

    /// For each of `len` pixels along one axis, the index of its cell among `n` cells
    /// (see [`PatchGrid::cell_bounds`]).
    pub(crate) fn cell_of_pixel(len: usize, n: usize) -> Vec<usize> {
        let mut out = vec![0usize; len];
        for cell in 0..n {
            let (s, e) = Self::cell_bounds(len, n, cell);
            out[s..e].iter_mut().for_each(|v| *v = cell);
        }
        out
    }

    /// Checks that a `height × width` map or image (`what`, named in the error) has at least one
    /// pixel per cell.
    ///
    /// # Errors
    /// [`MaskError::GridTooFine`] otherwise.
    pub fn check_fits(&self, height: usize, width: usize, what: &'static str) -> Result<()> {
        if height < self.rows || width < self.cols {
            return Err(MaskError::GridTooFine {
                what,
                rows: self.rows,
                cols: self.cols,
                height,
                width,
            });
        }
        Ok(())
    }
}

impl Default for PatchGrid {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_bounds_partition_and_match_divisible_patches() {
        for (len, n) in [(224, 14), (225, 14), (17, 4), (5, 5), (100, 7)] {
            let mut next = 0;
            for i in 0..n {
                let (s, e) = PatchGrid::cell_bounds(len, n, i);
                assert_eq!(s, next, "cells must be contiguous");
                assert!(e > s, "cells must be non-empty");
                assert!(e - s == len / n || e - s == len / n + 1);
                next = e;
            }
            assert_eq!(next, len, "cells must cover every pixel");
        }
        for i in 0..14 {
            assert_eq!(PatchGrid::cell_bounds(224, 14, i), (16 * i, 16 * i + 16));
        }
        // 225 = 13 * 16 + 17: only the last cell is one pixel larger.
        assert_eq!(PatchGrid::cell_bounds(225, 14, 0), (0, 16));
        assert_eq!(PatchGrid::cell_bounds(225, 14, 13), (208, 225));
    }

    #[test]
    fn constructors_validate() {
        assert_eq!(PatchGrid::for_image(224, 16).unwrap(), PatchGrid::DEFAULT);
        assert_eq!(PatchGrid::for_image(224, 14).unwrap().num_patches(), 256);
        assert!(PatchGrid::for_image(225, 16).is_err());
        assert!(PatchGrid::for_image(224, 0).is_err());
        assert!(PatchGrid::new(0, 3).is_err());
        assert!(PatchGrid::DEFAULT.check_fits(13, 224, "the map").is_err());
        assert!(PatchGrid::DEFAULT.check_fits(14, 14, "the map").is_ok());
        assert_eq!(PatchGrid::new(3, 5).unwrap().index(2, 4), 14);
    }
}
