//! Draws the five strategies side by side (Fig. 3 style) and prints one JSON record,
//! the way `fsvfm mask --all-strategies --png` and `fsvfm mask --json` will.
//!
//! ```text
//! cargo run --release --example mask_sheet -- [--parsing MAP.png|MAP.npy] [--image FACE.png] [--png OUT.png]
//! ```
//! Without a map, a synthetic face is used; without `--image`, the label map is drawn.

use fsvfm_masking::render::{RenderStyle, colorize_labels, load_face, render_strategies, save_png};
use fsvfm_masking::{
    LabelMap, MaskKey, MaskParams, PatchGrid, PatchRegions, SyntheticFace, mask_sample,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let map = match flag("--parsing") {
        Some(p) => LabelMap::load(p)?,
        None => SyntheticFace::default().render(224, 224)?,
    };
    let image = flag("--image");
    let out = flag("--png").unwrap_or_else(|| "mask_sheet.png".to_string());
    let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT)?;
    let face = match image {
        Some(p) => load_face(p)?,
        None => colorize_labels(&map),
    };
    let sheet = render_strategies(
        &face,
        &regions,
        0.75,
        MaskKey::from_seed(7),
        None,
        &RenderStyle::default(),
    )?;
    save_png(&sheet, &out)?;
    println!(
        "{}",
        serde_json::to_string(&mask_sample(&regions, &MaskParams::default(), 7)?)?
    );
    eprintln!("wrote {out}");
    Ok(())
}
