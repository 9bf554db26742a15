//! Face images as model input: decode (PNG/JPEG), resize to a square side with the bicubic filter
//! (PIL `Resize((S, S), BICUBIC)` as in the official transforms, spec §4), and lay out as
//! `[3, S, S]` floats in `[0, 1]` (torchvision `ToTensor`).

use std::path::Path;

/// Per-channel normalisation `(x − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanStd {
    /// RGB means.
    pub mean: [f32; 3],
    /// RGB standard deviations.
    pub std: [f32; 3],
}

impl MeanStd {
    /// The VGGFace2 statistics of the released checkpoints (spec §4).
    pub const VGGFACE2: MeanStd = MeanStd {
        mean: [0.548_220_75, 0.423_405_35, 0.365_465_16],
        std: [0.278_917_6, 0.243_854_08, 0.234_938_94],
    };

    /// Normalises a `[3, H, W]` image in place.
    pub fn apply(&self, chw: &mut [f32]) {
        let plane = chw.len() / 3;
        for (c, ch) in chw.chunks_mut(plane.max(1)).enumerate().take(3) {
            let (m, s) = (self.mean[c], self.std[c]);
            for v in ch {
                *v = (*v - m) / s;
            }
        }
    }

    /// The official `pretrain_ds_mean_std.txt` line: `{"mean": [..], "std": [..]}`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a `pretrain_ds_mean_std.txt` (ours or the official one: the first JSON line).
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = crate::input::read_text(path)?;
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(line)
            .map_err(|e| format!("{}: not a mean/std line: {e}", path.display()))
    }
}

/// File extensions read as images (lower case), by every dataset reader.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The entries of `dir`, sorted by path (a stable dataset order).
pub fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// [`load_rgb`], then normalised with `norm`: the model input of one image.
pub fn load_normalized(path: &Path, size: usize, norm: &MeanStd) -> Result<Vec<f32>, String> {
    let mut x = load_rgb(path, size)?;
    norm.apply(&mut x);
    Ok(x)
}

/// Decodes an image file and returns `[3, size, size]` RGB in `[0, 1]` (bicubic resize when the
/// file is not already `size × size`).
pub fn load_rgb(path: &Path, size: usize) -> Result<Vec<f32>, String> {
    Ok(rgb_to_chw(&to_input_size(decode_rgb(path)?, size as u32)))
}

/// The image as a model input of `size × size`: unchanged when it already is, else Pillow's
/// bicubic resize (what evaluation and `predict --crops` feed the model).
pub fn to_input_size(rgb: image::RgbImage, size: u32) -> image::RgbImage {
    if rgb.dimensions() == (size, size) {
        rgb
    } else {
        crate::augment::resize(&rgb, size, size, crate::augment::Filter::Bicubic)
    }
}

/// Decodes an image file (PNG, JPEG, WebP) to 8-bit RGB through the bounded reader
/// ([`crate::input::read_image`]: regular files within the size cap, header checked, truncated
/// JPEGs refused); the error names the file.
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, String> {
    crate::input::read_image(path).map_err(|e| match e {
        crate::input::InputError::Image { path, source } => {
            format!(
                "{}: cannot decode image: {source}",
                crate::input::show(&path)
            )
        }
        e => e.to_string(),
    })
}

/// An RGB image as `[3, H, W]` floats in `[0, 1]` (torchvision `ToTensor`).
pub fn rgb_to_chw(rgb: &image::RgbImage) -> Vec<f32> {
    let plane = (rgb.width() * rgb.height()) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px.0[c] as f32 / 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_layout_and_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let mut img = image::RgbImage::new(4, 4);
        img.put_pixel(1, 0, image::Rgb([255, 0, 51]));
        img.save(&p).unwrap();
        let v = load_rgb(&p, 4).unwrap();
        assert_eq!(v.len(), 48);
        assert_eq!(v[1], 1.0);
        assert_eq!(v[16 + 1], 0.0);
        assert!((v[32 + 1] - 0.2).abs() < 1e-6);
        assert_eq!(load_rgb(&p, 2).unwrap().len(), 12);
        std::fs::write(&p, b"not a png").unwrap();
        assert!(load_rgb(&p, 4).unwrap_err().contains("cannot decode"));
    }

    #[test]
    fn mean_std_line_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pretrain_ds_mean_std.txt");
        std::fs::write(&p, MeanStd::VGGFACE2.to_json_line() + "\n").unwrap();
        assert_eq!(MeanStd::read(&p).unwrap(), MeanStd::VGGFACE2);
        let mut x = vec![0.548_220_75f32; 3];
        MeanStd::VGGFACE2.apply(&mut x);
        assert!(x[0].abs() < 1e-7);
    }
}
