//! Fig. 3-style pictures of masks (feature `render`).
//!
//! The FSFM paper's Fig. 3 shows a face with its masked patches removed and the
//! fully covered region marked. Here masked patches are darkened, covered-region
//! patches are additionally tinted with a colour, and visible patches are left as
//! they are. Without a face photo, [`colorize_labels`] draws the label map itself.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{MaskError, Result};
use crate::font;
use crate::grid::PatchGrid;
use crate::labels::{LabelMap, lapa};
use crate::masking::{MaskKey, Masker, batch_region};
use crate::regions::{PatchRegions, Region};
use crate::strategy::{MaskParams, Strategy};

/// A fixed colour per LaPa id, used by [`colorize_labels`].
pub const LABEL_PALETTE: [[u8; 3]; lapa::NUM_LABELS] = [
    [200, 200, 200], // 0 background: light grey
    [232, 182, 150], // 1 skin
    [150, 100, 40],  // 2 right eyebrow
    [185, 125, 55],  // 3 left eyebrow
    [30, 110, 220],  // 4 right eye
    [70, 160, 250],  // 5 left eye
    [240, 200, 60],  // 6 nose
    [210, 40, 60],   // 7 upper lip
    [110, 0, 30],    // 8 inner mouth
    [235, 80, 100],  // 9 lower lip
    [70, 45, 30],    // 10 hair
];

/// How masked and covered patches are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderStyle {
    /// Brightness factor for masked patches (0 = black).
    pub masked_brightness: f32,
    /// Colour blended over covered-region patches.
    pub region_color: [u8; 3],
    /// Blend weight of `region_color` over the darkened pixel (0..=1).
    pub region_alpha: f32,
    /// Colour of 1-pixel patch borders, or `None` for no grid lines.
    pub grid_color: Option<[u8; 3]>,
}

impl Default for RenderStyle {
    fn default() -> Self {
        Self {
            masked_brightness: 0.2,
            region_color: [0, 210, 255],
            region_alpha: 0.55,
            grid_color: None,
        }
    }
}

/// Draws a label map with [`LABEL_PALETTE`], one pixel per label pixel.
pub fn colorize_labels(map: &LabelMap) -> RgbImage {
    let mut img = RgbImage::new(map.width() as u32, map.height() as u32);
    for (px, &l) in img.pixels_mut().zip(map.labels()) {
        *px = Rgb(LABEL_PALETTE[l as usize]);
    }
    img
}

/// Loads a face image (PNG or JPEG) as RGB.
///
/// # Errors
/// [`MaskError::Io`] if the file cannot be read or decoded (through
/// [`fsvfm_data::input::read_image`]: regular files within the size cap, header checked before
/// decoding, truncated JPEGs refused).
pub fn load_face(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    fsvfm_data::input::read_image(path).map_err(|e| MaskError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Saves an image as PNG, atomically (a temporary file and a rename).
///
/// # Errors
/// [`MaskError::Io`] if encoding or writing fails.
pub fn save_png(img: &RgbImage, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    fsvfm_data::atomic::write_png(img, path).map_err(|source| MaskError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Draws one sample's masks over `face` (Fig. 3 style).
///
/// The face is cut into `grid` cells with [`PatchGrid::cell_bounds`], so it may have
/// any size of at least one pixel per cell (it need not match the label map's size).
///
/// # Shapes
/// `mask`, `region_mask`: `[P]` with `P = grid.num_patches()`, 1 = masked / covered.
///
/// # Errors
/// [`MaskError::PatchCount`] if a mask has the wrong length; [`MaskError::GridTooFine`]
/// if the face is smaller than the grid.
pub fn render_mask(
    face: &RgbImage,
    grid: PatchGrid,
    mask: &[u8],
    region_mask: &[u8],
    style: &RenderStyle,
) -> Result<RgbImage> {
    let p = grid.num_patches();
    for m in [mask, region_mask] {
        if m.len() != p {
            return Err(MaskError::PatchCount {
                expected: p,
                got: m.len(),
            });
        }
    }
    let (w, h) = (face.width() as usize, face.height() as usize);
    grid.check_fits(h, w, "the face image")?;
    let mut out = face.clone();
    let a = style.region_alpha.clamp(0.0, 1.0);
    let dim = style.masked_brightness.clamp(0.0, 1.0);
    for r in 0..grid.rows() {
        let (y0, y1) = PatchGrid::cell_bounds(h, grid.rows(), r);
        for c in 0..grid.cols() {
            let (x0, x1) = PatchGrid::cell_bounds(w, grid.cols(), c);
            let idx = grid.index(r, c);
            let masked = mask[idx] != 0;
            let covered = region_mask[idx] != 0;
            for y in y0..y1 {
                for x in x0..x1 {
                    let px = out.get_pixel_mut(x as u32, y as u32);
                    for ch in 0..3 {
                        let mut v = f32::from(px.0[ch]);
                        if masked || covered {
                            v *= dim;
                        }
                        if covered {
                            v = v * (1.0 - a) + f32::from(style.region_color[ch]) * a;
                        }
                        px.0[ch] = v.round().clamp(0.0, 255.0) as u8;
                    }
                    let on_border = y == y0 || x == x0;
                    if let (Some(gc), true) = (style.grid_color, on_border) {
                        *px = Rgb(gc);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Draws the five strategies side by side for one face, each panel labelled with the
/// strategy name (and the covered region for CRFR-R/CRFR-P).
///
/// All panels use the same `key`, and CRFR-R and CRFR-P cover the same region: the
/// forced `region`, or the one [`batch_region`] draws for CRFR-P with `key`.
///
/// # Errors
/// As [`render_mask`] and [`Masker::mask_batch_into`].
pub fn render_strategies(
    face: &RgbImage,
    regions: &PatchRegions,
    ratio: f64,
    key: MaskKey,
    region: Option<Region>,
    style: &RenderStyle,
) -> Result<RgbImage> {
    let (w, h) = (face.width(), face.height());
    let shared_region = batch_region(
        &MaskParams {
            strategy: Strategy::CrfrP,
            ratio,
            region,
        },
        key,
    )?;
    let gap = 4u32;
    let mut scale = (w / 112).max(1);
    let widest = Strategy::ALL
        .iter()
        .map(|s| panel_label(*s, shared_region).len() as u32)
        .max()
        .unwrap_or(0);
    while scale > 1 && text_width(widest, scale) > w {
        scale -= 1;
    }
    let strip = font::GLYPH_H * scale + 2 * gap;
    let n = Strategy::ALL.len() as u32;
    let mut canvas =
        RgbImage::from_pixel(n * w + (n + 1) * gap, strip + h + gap, Rgb([255, 255, 255]));
    let mut masker = Masker::new();
    for (i, strategy) in Strategy::ALL.into_iter().enumerate() {
        let params = MaskParams {
            strategy,
            ratio,
            region: if strategy.covers_region() {
                shared_region
            } else {
                None
            },
        };
        let batch = masker.mask_batch(std::slice::from_ref(regions), &params, key)?;
        let (mask, region_mask) = (batch.mask(), batch.region_mask());
        let panel = render_mask(face, regions.grid(), mask, region_mask, style)?;
        let x0 = gap + i as u32 * (w + gap);
        image::imageops::replace(&mut canvas, &panel, i64::from(x0), i64::from(strip));
        let label = panel_label(strategy, batch.region());
        let tx = x0 + w.saturating_sub(text_width(label.len() as u32, scale)) / 2;
        draw_text(&mut canvas, tx, gap, &label, [0, 0, 0], scale);
    }
    Ok(canvas)
}

fn panel_label(strategy: Strategy, region: Option<Region>) -> String {
    match region {
        Some(r) if strategy.covers_region() => format!("{strategy}: {r}"),
        _ => strategy.to_string(),
    }
}

/// Draws a 1-pixel straight line from `a` to `b` (pixel coordinates; parts outside the image are
/// skipped), for the simple charts of run and evaluation reports.
pub fn draw_line(img: &mut RgbImage, a: (i64, i64), b: (i64, i64), color: [u8; 3]) {
    let ((x0, y0), (x1, y1)) = (a, b);
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for t in 0..=steps {
        let x = x0 + (x1 - x0) * t / steps;
        let y = y0 + (y1 - y0) * t / steps;
        if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, Rgb(color));
        }
    }
}

fn text_width(chars: u32, scale: u32) -> u32 {
    (chars * font::ADVANCE).saturating_sub(1) * scale
}

/// Draws `text` with the built-in 5×7 font, top-left at `(x, y)`, each font pixel a
/// `scale × scale` square; pixels outside the image are skipped.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, color: [u8; 3], scale: u32) {
    let scale = scale.max(1);
    for (i, ch) in text.chars().enumerate() {
        let gx = x + i as u32 * font::ADVANCE * scale;
        for (row, bits) in font::glyph(ch).iter().enumerate() {
            for col in 0..font::GLYPH_W {
                if bits >> (font::GLYPH_W - 1 - col) & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = gx + col * scale + dx;
                        let py = y + row as u32 * scale + dy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(color));
                        }
                    }
                }
            }
        }
    }
}
