//! The crate's single error type.

use std::fmt;
use std::path::PathBuf;

/// Where an offending value sits: an index into in-memory slices, or a line of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 0-based index into the `labels` / `scores` slices.
    Index(usize),
    /// 1-based line of the CSV file (the header is line 1).
    Line(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Index(i) => write!(f, "sample #{i}"),
            Position::Line(l) => write!(f, "line {l}"),
        }
    }
}

/// Everything that can go wrong while validating inputs, reading a score CSV or computing metrics.
///
/// Every variant renders as one self-contained sentence so that the CLI can print it unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// No samples at all.
    #[error("no samples: metrics need at least one real (label 0) and one fake (label 1) sample")]
    Empty,

    /// Two parallel inputs (labels and scores, or labels and video ids) differ in length.
    #[error("length mismatch: {expected} labels but {found} {what}")]
    LengthMismatch {
        /// What the second input is ("scores" or "video ids").
        what: &'static str,
        /// Number of labels.
        expected: usize,
        /// Length of the second input.
        found: usize,
    },

    /// A label that is neither 0 (real) nor 1 (fake).
    #[error("{at}: label `{value}` is not 0 (real) or 1 (fake)")]
    InvalidLabel {
        /// Where the label is.
        at: Position,
        /// The label as given.
        value: String,
    },

    /// A NaN or infinite score, or (CSV) a score that is not a number.
    #[error("{at}: score `{value}` is not a finite number")]
    NonFiniteScore {
        /// Where the score is.
        at: Position,
        /// The score as given.
        value: String,
    },

    /// Only one class is present, so ranking metrics (AUC, EER, AP, TPR@FPR) and per-class rates
    /// (balanced accuracy, HTER) are undefined.
    #[error(
        "all {n} samples are {class}: AUC, EER, AP, TPR@FPR, balanced accuracy and HTER need both \
         real (label 0) and fake (label 1) samples"
    )]
    SingleClass {
        /// Number of samples.
        n: usize,
        /// The only class present, in words.
        class: &'static str,
    },

    /// Frames of one video carry different labels.
    #[error(
        "video `{video}` mixes labels: {first_label} at {first_at} but {label} at {at} \
         (every frame of a video must carry the video's label)"
    )]
    InconsistentVideoLabel {
        /// The video id.
        video: String,
        /// Label of the video's first frame.
        first_label: u8,
        /// Where the first frame is.
        first_at: Position,
        /// The conflicting label.
        label: u8,
        /// Where the conflicting frame is.
        at: Position,
    },

    /// An empty video id (almost always a missing value in the CSV).
    #[error("{at}: empty video id")]
    EmptyVideoId {
        /// Where the id is.
        at: Position,
    },

    /// A video-level metric was requested for a set without video ids.
    #[error("video-level metrics need video ids, but the score set has none")]
    NoVideoIds,

    /// A parameter outside its domain (confidence level, FPR target, resample count).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Every bootstrap resample contained a single class.
    #[error(
        "bootstrap: all {skipped} resamples contained a single class; no interval can be formed"
    )]
    NoValidResamples {
        /// Number of skipped resamples.
        skipped: usize,
    },

    /// The score file could not be opened.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// A required CSV column is absent.
    #[error("the CSV has no `{column}` column (header: {header})")]
    MissingColumn {
        /// The missing column.
        column: String,
        /// The header as read, comma-separated.
        header: String,
    },

    /// A CSV column name appears twice, so it is ambiguous which one to read.
    #[error("the CSV header names column `{column}` more than once")]
    DuplicateColumn {
        /// The repeated column.
        column: String,
    },

    /// The CSV is malformed (ragged rows, invalid UTF-8, I/O error while reading).
    /// The csv crate's message names the record and line.
    #[error("malformed CSV: {0}")]
    Csv(#[from] csv::Error),
}
