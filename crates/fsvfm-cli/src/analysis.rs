//! `fsvfm attention-stats`: the papers' analyses of an encoder (FS-VFM Fig. 4): mean attention
//! distance and head-diversity KL per block and head, for one or more checkpoints on the same
//! images. Definitions: `fsvfm_eval::attention`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use fsvfm::{Encoder, EncoderOptions};
use fsvfm_data::npy;
use fsvfm_eval::AttentionStats;

/// Arguments of `fsvfm attention-stats`.
#[derive(Args, Debug)]
pub struct AttentionStatsArgs {
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
    ensure!(
        a.name.is_empty() || a.name.len() == a.checkpoint.len(),
        "{} --name for {} --checkpoint: give one name per checkpoint, or none",
        a.name.len(),
        a.checkpoint.len()
    );
    let options = EncoderOptions {
        model: a.model.as_deref().map(fsvfm::model_config).transpose()?,
        mean_std: a
            .mean_std
            .as_deref()
            .map(fsvfm::mean_std_named)
            .transpose()?,
        device: None,
    };
    let crops = match &a.images {
        Some(dir) => {
            let files = fsvfm_data::input::walk_files(dir, fsvfm_data::image_io::is_image_file)
                .map_err(anyhow::Error::msg)?;
            ensure!(
                !files.is_empty(),
                "{}: no images (.png, .jpg, .webp)",
                dir.display()
            );
            let mut crops = Vec::new();
            for f in files.iter().take(a.limit) {
                crops.push(fsvfm_data::input::read_image(f)?);
            }
            Some(crops)
        }
        None => None,
    };
    let input = match &a.input {
        Some(p) => Some(npy::read_f32(p)?),
        None => None,
    };
    let mut out = Vec::new();
    for (i, ck) in a.checkpoint.iter().enumerate() {
        let enc = Encoder::load_with(ck, &options)
            .with_context(|| format!("loading {}", ck.display()))?;
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
        let name = a.name.get(i).cloned().unwrap_or_else(|| short_name(ck));
        out.push(Entry {
            name,
            checkpoint: fsvfm_data::input::show(ck),
            stats,
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "checkpoints": out }))?
        );
    } else {
        print!("{}", table(&out));
    }
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
                "{b:>5}  {:>10.2}  {:>19}  {:>8.3}  {:>17}\n",
                AttentionStats::block_mean(&st.mean_attention_distance, b),
                format!("({ml:.1}..{mh:.1})"),
                AttentionStats::block_mean(&st.kl_divergence, b),
                format!("({kl:.2}..{kh:.2})"),
            ));
        }
    }
    s
}
