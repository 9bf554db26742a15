//! Helpers shared by the binary's integration tests.

use std::path::{Path, PathBuf};
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

/// `count` synthetic 32-px faces in `dir/faces` and the recipe of the micro pre-training model
/// (a 2-block, 32-px ViT with patch 8 and a one-block decoder) in `dir/micro.toml`, its first
/// lines `head` (TOML: `base = "tiny"`, batch size, epochs…).
pub fn micro_setup(dir: &Path, count: usize, head: &str) -> (PathBuf, PathBuf) {
    let faces = dir.join("faces");
    let n = count.to_string();
    let o = fsvfm(&[
        "synthetic-faces",
        "--output",
        faces.to_str().unwrap(),
        "--count",
        &n,
        "--size",
        "32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recipe = dir.join("micro.toml");
    let model = "[model]\ndecoder_embed_dim = 24\ndecoder_depth = 1\ndecoder_num_heads = 4\n\
                 projection_size = 16\nprojection_hidden_size = 48\n[model.encoder]\nimg_size = 32\n\
                 patch_size = 8\nembed_dim = 32\ndepth = 2\nnum_heads = 2\n";
    std::fs::write(&recipe, format!("{head}{model}")).unwrap();
    (faces, recipe)
}
