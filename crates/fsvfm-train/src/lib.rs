//! # fsvfm-train
//!
//! Training for FS-VFM. The pre-training half of the 3C framework (`../shared/spec/method.md`
//! §1, §3, §5): the online network learns masked-image modelling on CRFR-P-masked faces and
//! instance discrimination against an EMA target that sees the full face.
//!
//! - [`step`]: one iteration (losses, accumulation, global clip, AdamW, EMA).
//! - [`optim`]: AdamW as torch computes it, keyed by parameter name; [`ema`]; [`schedule`].
//! - [`params`]: parameters by module path (the key of optimiser state and of the EMA pairing).
//! - [`adapt`]: FS-Adapter training on cached backbone features (CE + Real-Anchor loss);
//!   [`finetune`]: full fine-tuning with layer-wise lr decay; [`transfer`]: what they share.
//! - [`recipe`]: TOML recipes and the paper's presets; [`data`]: batches and masks, prefetched;
//!   [`checkpoint`]: atomic checkpoint folders and exact resume; [`run`]: the loop.
//! - [`collective`] and [`parallel`]: data parallelism (replicas per device, averaged gradients);
//!   [`process_group`]: across processes and machines (torchrun-style environment, TCP).

pub mod adapt;
pub mod batches;
pub mod checkpoint;
pub mod collective;
pub mod data;
pub mod ema;
pub mod fas;
pub mod finetune;
pub mod optim;
pub mod parallel;
pub mod params;
pub mod process_group;
pub mod recipe;
pub mod run;
pub mod schedule;
pub mod sidecar;
pub mod step;
pub mod synthetic;
pub mod transfer;
pub mod transfer_recipe;
pub mod viz;

pub use collective::{Collective, DeviceCollective, SingleWorker, ThreadCollective, for_devices};
pub use optim::{AdamW, AdamWSettings, GradBuffer};
pub use parallel::{Finish, Replicas};
pub use recipe::{PretrainRecipe, RECIPES};
pub use run::{
    EpochLog, IterLog, Observer, PretrainOptions, PretrainSummary, Resume, Silent, pretrain,
};
pub use schedule::{LrSchedule, momentum_at};
pub use step::{HostBatch, LossValues, PretrainTrainer, UpdateInfo};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// From the model crate (shapes, masks, checkpoints).
    #[error(transparent)]
    Model(#[from] fsvfm_model::ModelError),
    /// A bad configuration.
    #[error("invalid training config: {0}")]
    Config(String),
    /// Data that cannot be read or used.
    #[error("{0}")]
    Data(String),
    /// A checkpoint that cannot be written or resumed from.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Training diverged.
    #[error("{0}")]
    Diverged(String),
    /// A multi-process run's group failed (a rank stopped, hangs, or was started differently).
    #[error("data-parallel group: {0}")]
    Collective(String),
    /// File system errors, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Wraps an I/O error with the path it happened on: `.map_err(io_error(path))`.
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
