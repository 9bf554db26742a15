//! LaPa face-parsing label maps (spec §2, §4).
//!
//! The official pre-processing runs facer's `farl/lapa/448` parser on the
//! 224×224 crop and stores the per-pixel argmax as an `int8` `.npy` of shape
//! `[1, 224, 224]`; the project stores the same ids as an 8-bit grayscale PNG
//! (ARCHITECTURE.md, "Region labels"). [`LabelMap`] reads both.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use crate::error::{MaskError, Result};

/// LaPa label ids as produced by facer's `farl/lapa/448` (spec §2 table).
pub mod lapa {
    /// Background.
    pub const BACKGROUND: u8 = 0;
    /// Face skin.
    pub const SKIN: u8 = 1;
    /// Right eyebrow.
    pub const RIGHT_EYEBROW: u8 = 2;
    /// Left eyebrow.
    pub const LEFT_EYEBROW: u8 = 3;
    /// Right eye.
    pub const RIGHT_EYE: u8 = 4;
    /// Left eye.
    pub const LEFT_EYE: u8 = 5;
    /// Nose.
    pub const NOSE: u8 = 6;
    /// Upper lip.
    pub const UPPER_LIP: u8 = 7;
    /// Inner mouth.
    pub const INNER_MOUTH: u8 = 8;
    /// Lower lip.
    pub const LOWER_LIP: u8 = 9;
    /// Hair.
    pub const HAIR: u8 = 10;
    /// Number of label ids (`0..=10`).
    pub const NUM_LABELS: usize = 11;
    /// The largest valid id.
    pub const MAX_LABEL: u8 = 10;
    /// facer's `label_names`, indexed by id.
    pub const NAMES: [&str; NUM_LABELS] = [
        "background",
        "face",
        "rb",
        "lb",
        "re",
        "le",
        "nose",
        "ulip",
        "imouth",
        "llip",
        "hair",
    ];
}

/// A per-pixel LaPa label map, `height × width`, row-major, ids in `0..=10`.
///
/// The constructor validates every id, so code holding a `LabelMap` can index
/// label tables without further checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelMap {
    height: usize,
    width: usize,
    labels: Vec<u8>,
}

impl LabelMap {
    /// Wraps a row-major buffer of `height * width` label ids.
    ///
    /// # Errors
    /// [`MaskError::EmptyMap`] for a zero dimension, [`MaskError::BufferSize`] if the
    /// length is wrong, [`MaskError::InvalidLabel`] for an id above 10.
    pub fn new(height: usize, width: usize, labels: Vec<u8>) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(MaskError::EmptyMap { height, width });
        }
        let expected = height.checked_mul(width).ok_or(MaskError::BufferSize {
            expected: usize::MAX,
            got: labels.len(),
        })?;
        if labels.len() != expected {
            return Err(MaskError::BufferSize {
                expected,
                got: labels.len(),
            });
        }
        if let Some(i) = labels.iter().position(|&v| v > lapa::MAX_LABEL) {
            return Err(MaskError::InvalidLabel {
                value: i64::from(labels[i]),
                row: i / width,
                col: i % width,
            });
        }
        Ok(Self {
            height,
            width,
            labels,
        })
    }

    /// Builds a map by calling `f(row, col)` for every pixel.
    ///
    /// # Errors
    /// As [`LabelMap::new`].
    pub fn from_fn(
        height: usize,
        width: usize,
        mut f: impl FnMut(usize, usize) -> u8,
    ) -> Result<Self> {
        let mut labels = Vec::with_capacity(height.saturating_mul(width));
        for r in 0..height {
            for c in 0..width {
                labels.push(f(r, c));
            }
        }
        Self::new(height, width, labels)
    }

    /// Loads a map from a `.png` (8-bit grayscale or 8-bit indexed; the stored
    /// value/index is the label id) or a `.npy` (any integer dtype, shape
    /// `[H, W]` or `[1, H, W]`), chosen by the file extension (case-insensitive).
    ///
    /// # Errors
    /// [`MaskError::UnsupportedExtension`], [`MaskError::Io`], and the format and
    /// validation errors of [`LabelMap::from_png_bytes`] / [`LabelMap::from_npy_bytes`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Self::from_png_file(path),
            Some("npy") => Self::from_npy_file(path),
            _ => Err(MaskError::UnsupportedExtension(path.to_path_buf())),
        }
    }

    /// Loads an 8-bit grayscale or 8-bit indexed PNG; see [`LabelMap::from_png_bytes`].
    ///
    /// # Errors
    /// [`MaskError::Io`] plus those of [`LabelMap::from_png_bytes`].
    pub fn from_png_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        decode_png(Cursor::new(bytes), &path.display().to_string())
    }

    /// Decodes PNG bytes. Grayscale 8-bit: the gray value is the label id.
    /// Indexed 8-bit: the palette *index* is the label id (the palette is ignored).
    ///
    /// # Errors
    /// [`MaskError::Png`] for undecodable data, [`MaskError::UnsupportedPng`] for any
    /// other colour type or bit depth, and the validation errors of [`LabelMap::new`].
    pub fn from_png_bytes(bytes: &[u8]) -> Result<Self> {
        decode_png(Cursor::new(bytes), "<bytes>")
    }

    /// Loads a `.npy`; see [`LabelMap::from_npy_bytes`].
    ///
    /// # Errors
    /// [`MaskError::Io`] plus those of [`LabelMap::from_npy_bytes`].
    pub fn from_npy_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        decode_npy(&bytes, &path.display().to_string())
    }

    /// Decodes a `.npy` holding an integer array of shape `[H, W]` or `[1, H, W]`
    /// (the official maps are `int8 [1, 224, 224]`).
    ///
    /// # Errors
    /// [`MaskError::Npy`] for malformed data, non-integer dtypes or other shapes;
    /// [`MaskError::InvalidLabel`] for values outside `0..=10` (negative included);
    /// [`MaskError::EmptyMap`] for a zero dimension.
    pub fn from_npy_bytes(bytes: &[u8]) -> Result<Self> {
        decode_npy(bytes, "<bytes>")
    }

    /// Encodes the map as an 8-bit grayscale PNG whose values are the label ids.
    ///
    /// # Errors
    /// [`MaskError::Png`] if encoding fails.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>> {
        let png_err = |e: png::EncodingError| MaskError::Png {
            context: "<encode>".into(),
            message: e.to_string(),
        };
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(png_err)?;
            writer.write_image_data(&self.labels).map_err(png_err)?;
            writer.finish().map_err(png_err)?;
        }
        Ok(out)
    }

    /// Writes [`LabelMap::to_png_bytes`] to `path` atomically.
    ///
    /// # Errors
    /// [`MaskError::Png`] or [`MaskError::Io`].
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_png_bytes()?;
        fsvfm_data::atomic::write_atomic(path, &bytes, false).map_err(|source| MaskError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The row-major label ids, `height * width` of them.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The label at `(row, col)`, or `None` outside the map.
    pub fn get(&self, row: usize, col: usize) -> Option<u8> {
        (row < self.height && col < self.width).then(|| self.labels[row * self.width + col])
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    fsvfm_data::input::read(path, fsvfm_data::input::Kind::Array).map_err(|source| MaskError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The most pixels a region map may have (4096 × 4096; LaPa's maps are 224 × 224 to 512 × 512):
/// a larger PNG header is refused before its frame is allocated.
pub const MAX_MAP_PIXELS: u64 = 1 << 24;

fn decode_png<R: BufRead + Seek>(reader: R, context: &str) -> Result<LabelMap> {
    let png_err = |e: png::DecodingError| MaskError::Png {
        context: context.to_string(),
        message: e.to_string(),
    };
    let mut decoder = png::Decoder::new(reader);
    // Keep palette indices as they are: for indexed maps the index is the label.
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(png_err)?;
    let (color, depth) = {
        let info = reader.info();
        (info.color_type, info.bit_depth)
    };
    if !matches!(color, png::ColorType::Grayscale | png::ColorType::Indexed)
        || depth != png::BitDepth::Eight
    {
        return Err(MaskError::UnsupportedPng {
            context: context.to_string(),
            found: format!("{color:?}, {depth:?}-bit"),
        });
    }
    // The header's size is checked before the frame buffer is allocated: a 100-byte file may
    // declare 10^12 pixels (found by `fsvfm-fuzz`, target `region_map`).
    let (w, h) = (reader.info().width, reader.info().height);
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_MAP_PIXELS {
        return Err(MaskError::Png {
            context: context.to_string(),
            message: format!(
                "{w}x{h} = {pixels} pixels is over the {MAX_MAP_PIXELS} a region map may have"
            ),
        });
    }
    let size = reader.output_buffer_size().ok_or_else(|| MaskError::Png {
        context: context.to_string(),
        message: "image too large".into(),
    })?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(png_err)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    // Rows may be padded to `line_size`; copy exactly `w` bytes per row.
    let line = frame.line_size;
    let mut labels = Vec::with_capacity(w * h);
    for r in 0..h {
        labels.extend_from_slice(&buf[r * line..r * line + w]);
    }
    LabelMap::new(h, w, labels)
}

fn decode_npy(bytes: &[u8], context: &str) -> Result<LabelMap> {
    let npy_err = |reason: String| MaskError::Npy {
        context: context.to_string(),
        reason,
    };
    let arr = fsvfm_data::npy::parse_int(bytes).map_err(npy_err)?;
    let (h, w) = match arr.shape.as_slice() {
        [h, w] | [1, h, w] => (*h, *w),
        other => {
            return Err(npy_err(format!(
                "shape {other:?}; expected [H, W] or [1, H, W]"
            )));
        }
    };
    if h == 0 || w == 0 {
        return Err(MaskError::EmptyMap {
            height: h,
            width: w,
        });
    }
    let mut labels = Vec::with_capacity(arr.values.len());
    for (i, &v) in arr.values.iter().enumerate() {
        match u8::try_from(v) {
            Ok(l) if l <= lapa::MAX_LABEL => labels.push(l),
            _ => {
                return Err(MaskError::InvalidLabel {
                    value: v,
                    row: i / w,
                    col: i % w,
                });
            }
        }
    }
    LabelMap::new(h, w, labels)
}
