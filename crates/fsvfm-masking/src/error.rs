//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong when loading label maps or building masks.
///
/// Every user-facing input (files, label values, grid sizes, ratios, names) is
/// checked and reported through this type; the library never panics on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file in question.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A picture could not be drawn (its titles, by `fsvfm-plot`).
    #[cfg(feature = "render")]
    #[error("drawing: {0}")]
    Draw(String),
    /// A PNG file could not be decoded or encoded.
    #[error("PNG error in {context}: {message}")]
    Png {
        /// The file name, or `"<bytes>"` for in-memory data.
        context: String,
        /// What the `png` crate reported.
        message: String,
    },
    /// A PNG decoded fine but is not an 8-bit single-channel label map.
    #[error(
        "{context}: unsupported PNG layout ({found}); label maps must be 8-bit grayscale or 8-bit indexed"
    )]
    UnsupportedPng {
        /// The file name, or `"<bytes>"`.
        context: String,
        /// Colour type and bit depth found.
        found: String,
    },
    /// A `.npy` file is malformed or has an unsupported dtype/shape.
    #[error("bad .npy data in {context}: {reason}")]
    Npy {
        /// The file name, or `"<bytes>"`.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// The file extension is neither `.png` nor `.npy`.
    #[error("{0}: unsupported label-map extension (expected .png or .npy)")]
    UnsupportedExtension(PathBuf),
    /// A pixel carries a value that is not a LaPa label id (`0..=10`).
    #[error("invalid LaPa label {value} at row {row}, column {col} (expected 0..=10)")]
    InvalidLabel {
        /// The offending value (as read, before any cast).
        value: i64,
        /// Pixel row.
        row: usize,
        /// Pixel column.
        col: usize,
    },
    /// The label map has zero rows or zero columns.
    #[error("empty label map ({height}x{width})")]
    EmptyMap {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// The pixel buffer does not have `height * width` entries.
    #[error("label buffer has {got} values, expected {expected}")]
    BufferSize {
        /// `height * width`.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The patch grid is invalid (zero rows/columns, or image not splittable by the patch size).
    #[error("invalid patch grid: {0}")]
    InvalidGrid(String),
    /// The grid is finer than the map or image, so some patch cell would hold no pixel.
    #[error(
        "a {rows}x{cols} patch grid needs at least one pixel per cell, but {what} is {height}x{width}"
    )]
    GridTooFine {
        /// What is too small: `the label map` or `the face image`.
        what: &'static str,
        /// Grid rows.
        rows: usize,
        /// Grid columns.
        cols: usize,
        /// Map or image rows.
        height: usize,
        /// Map or image columns.
        width: usize,
    },
    /// Precomputed patch label bits are invalid.
    #[error(
        "patch {patch}: label bits {bits:#06x} invalid (need at least one of the 11 LaPa bits and no other)"
    )]
    InvalidPatchLabels {
        /// Patch index (`r * cols + c`).
        patch: usize,
        /// The offending bit set.
        bits: u16,
    },
    /// A buffer's length does not match the number of patches.
    #[error("expected {expected} patch entries, got {got}")]
    PatchCount {
        /// `rows * cols`.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Samples in one batch were computed on different grids.
    #[error("sample {index} uses a {got_rows}x{got_cols} grid, but the batch uses {rows}x{cols}")]
    GridMismatch {
        /// Sample index in the batch.
        index: usize,
        /// Grid rows of sample 0.
        rows: usize,
        /// Grid columns of sample 0.
        cols: usize,
        /// Grid rows of the offending sample.
        got_rows: usize,
        /// Grid columns of the offending sample.
        got_cols: usize,
    },
    /// A batch must contain at least one sample.
    #[error("empty batch: at least one sample is needed")]
    EmptyBatch,
    /// The mask ratio is not a finite number in `[0, 1]`.
    #[error("mask ratio {0} is not in [0, 1]")]
    InvalidRatio(f64),
    /// A region was forced for a strategy that covers no region.
    #[error("strategy `{0}` does not cover a facial region, so --region cannot be used with it")]
    RegionNotApplicable(crate::Strategy),
    /// Unknown strategy name.
    #[error(
        "unknown masking strategy `{0}` (expected one of: random, fasking-i, frp, crfr-r, crfr-p)"
    )]
    UnknownStrategy(String),
    /// Unknown region name.
    #[error(
        "unknown facial region `{0}` (expected one of: eyebrows, eyes, nose, mouth, boundary, hair, skin, background)"
    )]
    UnknownRegion(String),
    /// An image could not be decoded or encoded (rendering only).
    #[cfg(feature = "render")]
    #[error("image error in {context}: {source}")]
    Image {
        /// The file name, or what was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: image::ImageError,
    },
}

/// Shorthand for `Result<T, MaskError>`.
pub type Result<T, E = MaskError> = std::result::Result<T, E>;
