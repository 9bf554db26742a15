//! `fsvfm mask`: facial-region masks for one face (JSON and Fig. 3 style pictures).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::Args;
use fsvfm_masking::render::{
    RenderStyle, colorize_labels, load_face, render_mask, render_strategies, save_png,
};
use fsvfm_masking::{
    LabelMap, MaskKey, MaskParams, PatchGrid, PatchRegions, Region, Strategy, mask_sample,
};

/// Arguments of `fsvfm mask`.
#[derive(Args, Debug)]
pub struct MaskArgs {
    /// LaPa-style label map (8-bit `.png` or integer `.npy`, `[H, W]` or `[1, H, W]`, ids 0..=10).
    #[arg(long)]
    pub parsing: PathBuf,
    /// Face image to draw the masks on (default: the label map in colour).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// random | fasking-i | frp | crfr-r | crfr-p.
    #[arg(long, default_value = "crfr-p")]
    pub strategy: Strategy,
    /// Fraction of patches masked.
    #[arg(value_parser = crate::flags::unit_open, long, default_value_t = 0.75)]
    pub ratio: f64,
    /// Random seed (same seed, same mask on every platform).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Region to cover (crfr-p / crfr-r; default: drawn at random among the six facial regions).
    #[arg(long)]
    pub region: Option<Region>,
    /// Patches per side (224 / 16 = 14).
    #[arg(value_parser = crate::flags::count::<1, 1024>, long, default_value_t = 14)]
    pub grid: usize,
    /// Print `{"mask": [...], "region_mask": [...], "region": ...}` (the default without --png).
    #[arg(long)]
    pub json: bool,
    /// Write a picture: masked patches darkened, the covered region tinted.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// With --png: the five strategies side by side for this face.
    #[arg(long)]
    pub all_strategies: bool,
}

/// `fsvfm mask`.
pub fn mask(a: MaskArgs) -> Result<()> {
    ensure!(
        !a.all_strategies || a.png.is_some(),
        "--all-strategies draws a picture: add --png OUT.png"
    );
    let map = LabelMap::load(&a.parsing)?;
    let grid = PatchGrid::square(a.grid)?;
    let regions = PatchRegions::from_label_map(&map, grid)?;
    let mut params = MaskParams::new(a.strategy, a.ratio);
    if let Some(r) = a.region {
        params = params.with_region(r);
    }
    let sample = mask_sample(&regions, &params, a.seed)?;
    if let Some(out) = &a.png {
        let face = match &a.image {
            Some(p) => load_face(p)?,
            None => colorize_labels(&map),
        };
        let style = RenderStyle::default();
        let picture = if a.all_strategies {
            render_strategies(
                &face,
                &regions,
                a.ratio,
                MaskKey::from_seed(a.seed),
                a.region,
                &style,
            )?
        } else {
            render_mask(&face, grid, &sample.mask, &sample.region_mask, &style)?
        };
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        save_png(&picture, out).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    if a.json || a.png.is_none() {
        println!("{}", serde_json::to_string(&sample)?);
    }
    Ok(())
}
