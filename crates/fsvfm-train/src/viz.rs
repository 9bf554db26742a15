//! Pictures of a pre-training run: reconstructions like the paper's figures (original | masked |
//! reconstruction | covered region, one row per face) and the loss curves of `log.jsonl`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use fsvfm_data::MeanStd;
use fsvfm_masking::PatchGrid;
use fsvfm_masking::render::{RenderStyle, render_mask};
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

/// The first (up to 16) images of a normalised batch `[N, 3, S, S]` as a titled grid of 8
/// columns: what the model sees after augmentation and mixing.
pub fn batch_picture(
    images: &[f32],
    dims: [usize; 4],
    mean_std: &MeanStd,
    path: &Path,
) -> Result<(), TrainError> {
    let [n, _, s, _] = dims;
    let shown = n.min(16);
    let cols = shown.clamp(1, 8);
    let tiles: Vec<RgbImage> = (0..shown)
        .map(|i| to_rgb(&images[i * 3 * s * s..(i + 1) * 3 * s * s], s, mean_std))
        .collect();
    let mut rows: Vec<Vec<RgbImage>> = tiles.chunks(cols).map(<[RgbImage]>::to_vec).collect();
    // A short last row is padded with blank cells, so every row has `cols` pictures.
    if let Some(last) = rows.last_mut() {
        last.resize(
            cols,
            RgbImage::from_pixel(s as u32, s as u32, Rgb([255; 3])),
        );
    }
    let title =
        format!("The first {shown} of a training batch of {n}, after augmentation and mixing");
    let canvas = fsvfm_plot::sheet(Some(&title), &[], &[], &rows)
        .map_err(|e| TrainError::Data(e.to_string()))?;
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
    let chw = c * s * s;
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let orig = to_rgb(&batch.images[i * chw..(i + 1) * chw], s, mean_std);
        let row = |v: &[u8]| v[i * l..(i + 1) * l].to_vec();
        rows.push(vec![
            orig.clone(),
            render_mask(&orig, grid, &row(&batch.mask), &none, &style)
                .map_err(|e| TrainError::Data(e.to_string()))?,
            to_rgb(&rec[i * chw..(i + 1) * chw], s, mean_std),
            render_mask(&orig, grid, &none, &row(&batch.region), &style)
                .map_err(|e| TrainError::Data(e.to_string()))?,
        ]);
    }
    let titles = ["original", "masked", "reconstruction", "covered region"].map(String::from);
    let canvas = fsvfm_plot::sheet(None, &titles, &[], &rows)
        .map_err(|e| TrainError::Data(e.to_string()))?;
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
    let series = |k: usize, name: &str, colour| fsvfm_plot::Series {
        mark: fsvfm_plot::Mark::Line { width: 1 },
        ..fsvfm_plot::Series::line(
            name,
            iters.iter().map(|(&it, v)| (it as f64, v[k])).collect(),
            colour,
        )
    };
    let p = fsvfm_plot::PALETTE;
    let mut top = fsvfm_plot::Panel::new("Reconstruction losses", "iteration", "loss");
    top.series = vec![
        series(0, "total", p[0]),
        series(1, "rec masked", p[1]),
        series(2, "rec region", p[2]),
    ];
    let mut bottom = fsvfm_plot::Panel::new("Instance discrimination", "iteration", "sim loss");
    bottom.series = vec![series(3, "sim", p[3])];
    let figure = fsvfm_plot::Figure {
        title: None,
        panels: vec![top, bottom],
        columns: 1,
        panel_size: (640, 260),
    };
    figure
        .save(path)
        .map_err(|e| TrainError::Data(e.to_string()))
}
