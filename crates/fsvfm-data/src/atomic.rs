//! Atomic file writes for the burn-free crates (arrays, crops, region maps, synthesised images,
//! manifests): a temporary name in the same folder, then a rename, so a killed run never leaves a
//! truncated file under the final name. (`fsvfm_model::checkpoint::write_atomic` does the same,
//! always synced, for checkpoints.)

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through `.NAME.tmpPID` in the same folder
/// ([`crate::outdir::temp_path`]: bounded in length) and a rename. `durable`
/// also syncs the file to disk before the rename (checkpoints); without it the rename is still
/// atomic against a killed process, which is what bulk outputs (crops, maps) need. On failure the
/// temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    if path.file_name().is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        ));
    }
    let tmp = crate::outdir::temp_path(path, "tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Encodes `img` as PNG and writes it with [`write_atomic`] (not synced: pictures, heatmaps,
/// plots), so a killed run leaves no half-written picture under the final name.
pub fn write_png(img: &image::RgbImage, path: &Path) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(std::io::Error::other)?;
    write_atomic(path, &bytes, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        for (text, durable) in [("first", false), ("second", true)] {
            write_atomic(&p, text.as_bytes(), durable).unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // A folder path cannot be written; nothing is left behind.
        assert!(write_atomic(d.path(), b"x", false).is_err());
        let missing = d.path().join("no/such/dir/b.txt");
        assert!(write_atomic(&missing, b"x", false).is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
