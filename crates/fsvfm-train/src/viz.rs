//! Pictures of a pre-training run: reconstructions like the paper's figures (original | masked |
//! reconstruction | covered region, one row per face) and the loss curves of `log.jsonl`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use fsvfm_data::MeanStd;
use fsvfm_masking::PatchGrid;
use fsvfm_masking::render::{RenderStyle, draw_line, draw_text, render_mask};
use fsvfm_model::loss::{patchify, unpatchify};
use fsvfm_model::{FsfmPretrain, PatchMask};
use image::{Rgb, RgbImage};

use crate::TrainError;
use crate::step::HostBatch;

/// `[3, S, S]` normalised → RGB picture.
fn to_rgb(chw: &[f32], s: usize, ms: &MeanStd) -> RgbImage {
    let plane = s * s;
    RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let i = y as usize * s + x as usize;
        let mut px = [0u8; 3];
        for (c, v) in px.iter_mut().enumerate() {
            let f = chw[c * plane + i] * ms.std[c] + ms.mean[c];
            *v = (f.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        Rgb(px)
    })
}

/// The first (up to 16) images of a normalised batch `[N, 3, S, S]` as a grid of 8 columns:
/// what the model sees after augmentation and mixing.
pub fn batch_picture(
    images: &[f32],
    dims: [usize; 4],
    mean_std: &MeanStd,
    path: &Path,
) -> Result<(), TrainError> {
    let [n, _, s, _] = dims;
    let shown = n.min(16);
    let cols = shown.min(8);
    let rows = shown.div_ceil(cols.max(1));
    let (gap, cell) = (2u32, s as u32);
    let mut canvas = RgbImage::from_pixel(
        cols as u32 * (cell + gap) + gap,
        rows as u32 * (cell + gap) + gap,
        Rgb([255, 255, 255]),
    );
    for i in 0..shown {
        let tile = to_rgb(&images[i * 3 * s * s..(i + 1) * 3 * s * s], s, mean_std);
        let (x, y) = ((i % cols) as u32, (i / cols) as u32);
        image::imageops::replace(
            &mut canvas,
            &tile,
            (gap + x * (cell + gap)) as i64,
            (gap + y * (cell + gap)) as i64,
        );
    }
    encode_png(&canvas, path)
}

fn encode_png(img: &RgbImage, path: &Path) -> Result<(), TrainError> {
    fsvfm_data::atomic::write_png(img, path)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
}

/// Reconstructs `batch` with the online network and draws one row per face. With `norm_pix`
/// the predictions are per-patch normalised, so they are mapped back with each target patch's
/// mean and variance (as the MAE visualisation does); visible patches show the input.
pub fn reconstruction_picture(
    online: &FsfmPretrain,
    batch: &HostBatch,
    mean_std: &MeanStd,
    patch: usize,
    norm_pix: bool,
    path: &Path,
) -> Result<(), TrainError> {
    let online = online.valid();
    let device = online.cls_token.val().device();
    let [n, c, s, _] = batch.dims;
    let l = batch.num_patches();
    let x = Tensor::<4>::from_data(TensorData::new(batch.images.clone(), batch.dims), &device);
    let out = online.forward(x.clone(), &PatchMask::new(n, l, batch.mask.clone())?)?;
    let target = patchify(x, patch);
    let mut pred = out.pred;
    if norm_pix {
        let mean = target.clone().mean_dim(2);
        let var = target.clone().var(2);
        pred = pred * (var + 1e-6).sqrt() + mean;
    }
    let m: Vec<f32> = batch.mask.iter().map(|&b| f32::from(b)).collect();
    let m = Tensor::<2>::from_data(TensorData::new(m, [n, l]), &device).reshape([n, l, 1]);
    let mixed = target.clone() * (m.clone().neg() + 1.0) + pred * m;
    let rec: Vec<f32> = unpatchify(mixed, patch, c)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Data(format!("{e:?}")))?;
    let g = (l as f64).sqrt().round() as usize;
    let grid = PatchGrid::square(g).map_err(|e| TrainError::Data(e.to_string()))?;
    let style = RenderStyle::default();
    let none = vec![0u8; l];
    let (pad, head) = (4u32, 14u32);
    let su = s as u32;
    let mut canvas = RgbImage::from_pixel(
        4 * su + 5 * pad,
        n as u32 * (su + pad) + pad + head,
        Rgb([255; 3]),
    );
    for (k, title) in ["original", "masked", "reconstruction", "covered region"]
        .iter()
        .enumerate()
    {
        draw_text(
            &mut canvas,
            pad + k as u32 * (su + pad),
            3,
            title,
            [0, 0, 0],
            1,
        );
    }
    let chw = c * s * s;
    for i in 0..n {
        let orig = to_rgb(&batch.images[i * chw..(i + 1) * chw], s, mean_std);
        let row = |v: &[u8]| v[i * l..(i + 1) * l].to_vec();
        let panels = [
            orig.clone(),
            render_mask(&orig, grid, &row(&batch.mask), &none, &style)
                .map_err(|e| TrainError::Data(e.to_string()))?,
            to_rgb(&rec[i * chw..(i + 1) * chw], s, mean_std),
            render_mask(&orig, grid, &none, &row(&batch.region), &style)
                .map_err(|e| TrainError::Data(e.to_string()))?,
        ];
        for (k, p) in panels.iter().enumerate() {
            let (x0, y0) = (
                pad + k as u32 * (su + pad),
                head + pad + i as u32 * (su + pad),
            );
            image::imageops::replace(&mut canvas, p, x0 as i64, y0 as i64);
        }
    }
    encode_png(&canvas, path)
}

/// Draws the loss curves of a `log.jsonl` (per iteration; a resumed run's repeated iterations
/// count once, the last logged value wins): top panel `total`, `rec_masked`, `rec_region`,
/// bottom panel `sim`.
pub fn loss_plot(log: &Path, path: &Path) -> Result<(), TrainError> {
    let text = fsvfm_data::input::read_to_string(log).map_err(crate::io_error(log))?;
    let mut iters: BTreeMap<u64, [f64; 4]> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["kind"] != "iter" || v["skipped"] == true {
            continue;
        }
        let f = |k: &str| v["loss"][k].as_f64().unwrap_or(f64::NAN);
        if let Some(it) = v["iteration"].as_u64() {
            iters.insert(it, [f("total"), f("rec_masked"), f("rec_region"), f("sim")]);
        }
    }
    let pts: Vec<(u64, [f64; 4])> = iters.into_iter().collect();
    let (w, ph, pad) = (640u32, 220u32, 30u32);
    let mut img = RgbImage::from_pixel(w, 2 * ph + 3 * pad, Rgb([255; 3]));
    let colors = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];
    let names = ["total", "rec masked", "rec region", "sim"];
    for (panel, series) in [(0u32, &[0usize, 1, 2][..]), (1, &[3][..])] {
        let top = pad + panel * (ph + pad);
        let vals: Vec<f64> = pts
            .iter()
            .flat_map(|(_, v)| series.iter().map(move |&k| v[k]))
            .filter(|v| v.is_finite())
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        for x in pad..w - pad {
            img.put_pixel(x, top + ph, Rgb([0, 0, 0]));
        }
        for y in top..=top + ph {
            img.put_pixel(pad, y, Rgb([0, 0, 0]));
        }
        draw_text(
            &mut img,
            pad + 4,
            top - 12,
            &format!("{hi:.4}"),
            [90, 90, 90],
            1,
        );
        draw_text(
            &mut img,
            pad + 4,
            top + ph + 3,
            &format!("{lo:.4}"),
            [90, 90, 90],
            1,
        );
        let mut lx = pad + 90;
        for &k in series {
            draw_text(&mut img, lx, top - 12, names[k], colors[k], 1);
            lx += 6 * names[k].len() as u32 + 12;
            let n = pts.len().max(2) as f64 - 1.0;
            let mut prev: Option<(i64, i64)> = None;
            for (j, (_, v)) in pts.iter().enumerate() {
                if !v[k].is_finite() {
                    prev = None;
                    continue;
                }
                let x = pad as f64 + 1.0 + j as f64 / n * (w - 2 * pad - 2) as f64;
                let y = top as f64 + ph as f64 * (1.0 - (v[k] - lo) / (hi - lo));
                let p = (x.round() as i64, y.round() as i64);
                if let Some(q) = prev {
                    draw_line(&mut img, q, p, colors[k]);
                }
                prev = Some(p);
            }
        }
    }
    encode_png(&img, path)
}
