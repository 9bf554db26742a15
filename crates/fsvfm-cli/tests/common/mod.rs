//! Helpers shared by the binary's integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A file of the model crate's reference fixtures (`tools/reference/export_model_fixtures.py`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fsvfm-model/tests/fixtures")
        .join(name)
}

/// Runs `fsvfm ARGS` to completion (stdin closed, output captured).
pub fn fsvfm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsvfm"))
        .args(args)
        .output()
        .expect("run fsvfm")
}

/// What a run printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The fixtures' 32-px, 2-block ViT (`--model` JSON).
pub const SMALL: &str =
    r#"{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}"#;
