//! Fig. 3-style pictures of masks (feature `render`).
//!
//! The FSFM paper's Fig. 3 shows a face with its masked patches removed and the
//! fully covered region marked. Here masked patches are darkened, covered-region
//! patches are additionally tinted with a colour, and visible patches are left as
//! they are. Without a face photo, [`colorize_labels`] draws the label map itself.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{MaskError, Result};
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
    let shared_region = batch_region(
        &MaskParams {
            strategy: Strategy::CrfrP,
            ratio,
            region,
        },
        key,
    )?;
    let mut masker = Masker::new();
    let mut panels = Vec::with_capacity(Strategy::ALL.len());
    let mut labels = Vec::with_capacity(Strategy::ALL.len());
    for strategy in Strategy::ALL {
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
        panels.push(render_mask(face, regions.grid(), mask, region_mask, style)?);
        labels.push(panel_label(strategy, batch.region()));
    }
    fsvfm_plot::sheet(None, &labels, &[], &[panels]).map_err(|e| MaskError::Draw(e.to_string()))
}

fn panel_label(strategy: Strategy, region: Option<Region>) -> String {
    match region {
        Some(r) if strategy.covers_region() => format!("{strategy}: {r}"),
        _ => strategy.to_string(),
    }
}
