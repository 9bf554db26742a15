//! The papers' analyses of an encoder, for one or more checkpoints on the same images:
//! `fsvfm attention-stats` (FS-VFM Fig. 4: mean attention distance and head-diversity KL per
//! block and head; definitions in `fsvfm_eval::attention`) and `fsvfm attention-maps` (Fig. 5:
//! the last block's class-token attention on faces).

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use fsvfm::{Encoder, EncoderOptions};
use fsvfm_data::npy;
use fsvfm_eval::AttentionStats;
use fsvfm_plot::figures::{AttentionEntry, attention_statistics};
use image::RgbImage;

/// The checkpoints an analysis compares, and how to load those without a sidecar.
#[derive(Args, Debug)]
pub struct Encoders {
    /// A checkpoint (any kind: pre-training, fine-tuned, FS-Adapter, FAS; its encoder is
    /// analysed). Repeat to compare checkpoints on the same images.
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// A name per checkpoint, in order (default: the file's folder and name).
    #[arg(long)]
    pub name: Vec<String>,
    /// Architecture, for official `.pth` files without a sidecar: a preset or a JSON file.
    #[arg(long)]
    pub model: Option<String>,
    /// Input normalisation for `--images` when the checkpoint has no sidecar: `vggface2` or a
    /// `pretrain_ds_mean_std.txt`.
    #[arg(long)]
    pub mean_std: Option<String>,
}

impl Encoders {
    /// Refuses a `--name` count that does not match the `--checkpoint` count (before any work).
    fn check(&self) -> Result<()> {
        ensure!(
            self.name.is_empty() || self.name.len() == self.checkpoint.len(),
            "{} --name for {} --checkpoint: give one name per checkpoint, or none",
            self.name.len(),
            self.checkpoint.len()
        );
        Ok(())
    }

    /// `(name, encoder)` per checkpoint, loaded one at a time by `each` (so only one model is
    /// in memory at once). Callers [`Encoders::check`] first, before reading their images.
    fn each(
        &self,
        mut each: impl FnMut(String, &std::path::Path, Encoder) -> Result<()>,
    ) -> Result<()> {
        let options = EncoderOptions {
            model: self.model.as_deref().map(fsvfm::model_config).transpose()?,
            mean_std: self
                .mean_std
                .as_deref()
                .map(fsvfm::mean_std_named)
                .transpose()?,
            device: None,
        };
        for (i, ck) in self.checkpoint.iter().enumerate() {
            let enc = Encoder::load_with(ck, &options)
                .with_context(|| format!("loading {}", ck.display()))?;
            let name = self.name.get(i).cloned().unwrap_or_else(|| short_name(ck));
            each(name, ck, enc)?;
        }
        Ok(())
    }
}

/// Creates the folder `path` is to be written in.
fn parent_dir(path: &std::path::Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display())),
        None => Ok(()),
    }
}

/// The images of `paths` (a file is itself, a folder its images in path order), the first
/// `limit` of them, decoded; a folder without images is an error.
fn read_crops(paths: &[PathBuf], limit: usize) -> Result<(Vec<PathBuf>, Vec<RgbImage>)> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let found = fsvfm_data::input::walk_files(p, fsvfm_data::image_io::is_image_file)
                .map_err(anyhow::Error::msg)?;
            ensure!(
                !found.is_empty(),
                "{}: no images (.png, .jpg, .webp)",
                p.display()
            );
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let files: Vec<PathBuf> = files.into_iter().take(limit).collect();
    let mut crops = Vec::with_capacity(files.len());
    for f in &files {
        crops.push(fsvfm_data::input::read_image(f)?);
    }
    Ok((files, crops))
}

/// Arguments of `fsvfm attention-stats`.
#[derive(Args, Debug)]
pub struct AttentionStatsArgs {
    #[command(flatten)]
    pub encoders: Encoders,
    /// Normalised float32 images `[N, 3, S, S]` (`.npy`).
    #[arg(long, conflicts_with = "images", required_unless_present = "images")]
    pub input: Option<PathBuf>,
    /// A folder of face crops (`.png`, `.jpg`, `.webp`; resized to the input, normalised with
    /// the checkpoint's mean/std), read in path order.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Use at most this many images of `--images`.
    #[arg(value_parser = crate::flags::count::<1, 1_000_000>, long, default_value_t = 64)]
    pub limit: usize,
    /// Images per forward pass.
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 8)]
    pub batch_size: usize,
    /// Print JSON (`{"checkpoints": [{name, checkpoint, mean_attention_distance, kl_divergence,
    /// blocks, heads, images}]}`) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the figure (FS-VFM Fig. 4: both statistics per block, a small dot per head and
    /// a large one for the block mean, a colour per checkpoint) as PNG, or as SVG when the path
    /// ends in `.svg`.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
    /// Also write the JSON of `--json` to this file (atomically).
    #[arg(long, value_name = "OUT.json")]
    pub output: Option<PathBuf>,
}

/// One checkpoint's result.
#[derive(serde::Serialize)]
struct Entry {
    name: String,
    checkpoint: String,
    #[serde(flatten)]
    stats: AttentionStats,
}

/// `fsvfm attention-stats`.
pub fn attention_stats(a: AttentionStatsArgs) -> Result<()> {
    a.encoders.check()?;
    if let Some(p) = &a.png {
        fsvfm_plot::Format::of(p)?;
    }
    let crops = match &a.images {
        Some(dir) => Some(read_crops(std::slice::from_ref(dir), a.limit)?.1),
        None => None,
    };
    let input = match &a.input {
        Some(p) => Some(npy::read_f32(p)?),
        None => None,
    };
    let mut out = Vec::new();
    a.encoders.each(|name, ck, enc| {
        let stats = match (&crops, &input) {
            (Some(c), _) => enc.attention_stats_of(c, a.batch_size)?,
            (None, Some(x)) => {
                let s = enc.input_size();
                ensure!(
                    x.shape.len() == 4 && x.shape[1..] == [3, s, s],
                    "{} has shape {:?}, but {} expects [N, 3, {s}, {s}] (normalised float32 images)",
                    a.input.as_ref().expect("input").display(),
                    x.shape,
                    ck.display()
                );
                enc.attention_stats(&x.data, a.batch_size)?
            }
            (None, None) => bail!("give --input X.npy or --images DIR"),
        };
        out.push(Entry {
            name,
            checkpoint: fsvfm_data::input::show(ck),
            stats,
        });
        Ok(())
    })?;
    if let Some(p) = &a.png {
        let images = out.first().map_or(0, |e| e.stats.images);
        parent_dir(p)?;
        attention_figure(&out, images).save(p)?;
    }
    let json = serde_json::to_string_pretty(&serde_json::json!({ "checkpoints": out }))?;
    if let Some(p) = &a.output {
        parent_dir(p)?;
        fsvfm::data::atomic::write_atomic(p, format!("{json}\n").as_bytes(), false)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", table(&out));
    }
    Ok(())
}

fn attention_figure(out: &[Entry], images: usize) -> fsvfm_plot::Figure {
    let entries: Vec<AttentionEntry> = out
        .iter()
        .map(|e| AttentionEntry {
            name: &e.name,
            distance: &e.stats.mean_attention_distance,
            kl: &e.stats.kl_divergence,
        })
        .collect();
    attention_statistics(
        &format!(
            "Attention per block and head ({images} image{})",
            if images == 1 { "" } else { "s" }
        ),
        &entries,
    )
}

/// Arguments of `fsvfm attention-maps`.
#[derive(Args, Debug)]
pub struct AttentionMapsArgs {
    #[command(flatten)]
    pub encoders: Encoders,
    /// Face crops: an image file, or a folder of them read in path order (resized to the input,
    /// normalised with each checkpoint's mean/std); repeat to add more. One row each.
    #[arg(long, required = true)]
    pub images: Vec<PathBuf>,
    /// Use at most this many images.
    #[arg(value_parser = crate::flags::count::<1, 64>, long, default_value_t = 6)]
    pub limit: usize,
    /// The grid: one row per face (the face, then its map under each checkpoint), as PNG.
    #[arg(long, value_name = "OUT.png")]
    pub out: PathBuf,
    /// Title over the grid.
    #[arg(
        long,
        default_value = "Last-block class-token attention (heads averaged)"
    )]
    pub title: String,
    /// Images per forward pass.
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 8)]
    pub batch_size: usize,
}

/// `fsvfm attention-maps` (FS-VFM Fig. 5): the last block's class-token attention, heads
/// averaged, of each checkpoint on the same faces, side by side in one titled grid.
pub fn attention_maps(a: AttentionMapsArgs) -> Result<()> {
    a.encoders.check()?;
    ensure!(
        fsvfm_plot::Format::of(&a.out)? == fsvfm_plot::Format::Png,
        "{}: the grid of pictures is written as PNG",
        a.out.display()
    );
    let (files, crops) = read_crops(&a.images, a.limit)?;
    let mut columns = vec!["face".to_string()];
    let mut cells: Vec<Vec<RgbImage>> = vec![Vec::new(); crops.len()];
    let mut side = None;
    a.encoders.each(|name, ck, enc| {
        let s = enc.input_size() as u32;
        ensure!(
            *side.get_or_insert(s) == s,
            "{} takes {s}-pixel faces, the checkpoints before it {}: compare encoders of one input size",
            ck.display(),
            side.unwrap_or(s)
        );
        let maps = enc.attention_maps_of(&crops, a.batch_size)?;
        for ((row, crop), map) in cells.iter_mut().zip(&crops).zip(&maps) {
            let face = fsvfm_data::image_io::to_input_size(crop.clone(), s);
            if row.is_empty() {
                row.push(face.clone());
            }
            row.push(fsvfm::heatmap::overlay(&face, map));
        }
        columns.push(name);
        Ok(())
    })?;
    let rows: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        })
        .collect();
    let grid = fsvfm_plot::sheet(Some(&a.title), &columns, &rows, &cells)?;
    parent_dir(&a.out)?;
    fsvfm::data::atomic::write_png(&grid, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "{}: {} face{} x {} checkpoint{}",
        a.out.display(),
        crops.len(),
        if crops.len() == 1 { "" } else { "s" },
        columns.len() - 1,
        if columns.len() == 2 { "" } else { "s" }
    );
    Ok(())
}

/// `parent/file` of a checkpoint path (enough to tell runs apart).
fn short_name(p: &std::path::Path) -> String {
    let file = p.file_name().map(|f| f.to_string_lossy().into_owned());
    let parent = p
        .parent()
        .and_then(|d| d.file_name())
        .map(|f| f.to_string_lossy().into_owned());
    match (parent, file) {
        (Some(d), Some(f)) => format!("{d}/{f}"),
        (None, Some(f)) => f,
        _ => fsvfm_data::input::show(p),
    }
}

/// Per checkpoint, one row per block: the head means of MAD (pixels) and KL (nats), and the
/// range over heads.
fn table(entries: &[Entry]) -> String {
    let mut s = String::new();
    for e in entries {
        let st = &e.stats;
        s.push_str(&format!(
            "{} ({} blocks x {} heads, {} image{})\n{:>5}  {:>10}  {:>19}  {:>8}  {:>17}\n",
            e.name,
            st.blocks,
            st.heads,
            st.images,
            if st.images == 1 { "" } else { "s" },
            "block",
            "MAD px",
            "(min..max)",
            "KL",
            "(min..max)"
        ));
        for b in 0..st.blocks {
            let range = |v: &[f64]| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            };
            let (ml, mh) = range(&st.mean_attention_distance[b]);
            let (kl, kh) = range(&st.kl_divergence[b]);
            s.push_str(&format!(
                "{:>5}  {:>10.2}  {:>19}  {:>8.3}  {:>17}\n",
                b + 1,
                AttentionStats::block_mean(&st.mean_attention_distance, b),
                format!("({ml:.1}..{mh:.1})"),
                AttentionStats::block_mean(&st.kl_divergence, b),
                format!("({kl:.2}..{kh:.2})"),
            ));
        }
    }
    s
}
