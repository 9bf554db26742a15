//! The library's one error type.

use std::path::PathBuf;

/// What went wrong, with the file and the remedy where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input image or video that cannot be decoded (a clear per-input failure: the caller
    /// may go on with the next input).
    #[error("{}: {reason}", path.display())]
    Input {
        /// The input.
        path: PathBuf,
        /// Why it cannot be read.
        reason: String,
    },
    /// The checkpoint lacks what loading needs, and nothing beside it says it.
    #[error(
        "{}: {missing} is not known (no fsvfm.json beside it, nor the previous release's {legacy}): pass {flag}",
        checkpoint.display()
    )]
    MissingMetadata {
        /// The weight file.
        checkpoint: PathBuf,
        /// What is missing (`the architecture`, `the normalisation`).
        missing: &'static str,
        /// The previous release's file that would have said it.
        legacy: &'static str,
        /// The command-line flag and library option that supply it.
        flag: &'static str,
    },
    /// A path that is not a model file, with the file to use instead.
    #[error("{} is {what}: use {}", path.display(), use_instead.display())]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// What it is (`the resume folder of a training run`).
        what: &'static str,
        /// The file to give instead.
        use_instead: PathBuf,
    },
    /// A checkpoint that loads but cannot serve the request (no head, wrong class index).
    #[error("{}: {reason}", path.display())]
    Checkpoint {
        /// The weight file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument (empty batch, unknown preset, non-finite pixels).
    #[error("{0}")]
    Invalid(String),
    /// From the face pipeline (missing face models, decoding, detection).
    #[error(transparent)]
    Faces(#[from] fsvfm_faces::FaceError),
    /// From the model crate (configs, weight files, shapes).
    #[error(transparent)]
    Model(#[from] fsvfm_model::ModelError),
    /// From training (checkpoints, sidecars, data, divergence).
    #[error(transparent)]
    Train(#[from] fsvfm_train::TrainError),
    /// From the metrics.
    #[error(transparent)]
    Eval(#[from] fsvfm_eval::EvalError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
