//! `fsvfm prepare`: photos and videos → FSFM face crops, region maps, landmarks and a manifest.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};
use fsvfm_faces::assets::Assets;
use fsvfm_faces::geometry::DlibCalibration;
use fsvfm_faces::pipeline::{DetectorChoice, FacePipeline, PipelineOptions};
use fsvfm_faces::prepare::{PrepareOptions, list_inputs, prepare};
use fsvfm_faces::video::FrameSelection;

/// Arguments of `fsvfm prepare`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// A folder (searched recursively), one image or video, or a list file (.txt, one path per line).
    #[arg(long)]
    input: PathBuf,
    /// Output folder (images/, parsing_maps/, landmarks/, manifest.jsonl, skipped.jsonl). Re-running
    /// into the same folder skips inputs already done.
    #[arg(long)]
    output: PathBuf,
    /// Frames taken uniformly from each video (np.linspace, as FSFM/DeepfakeBench).
    #[arg(value_parser = crate::flags::FRAMES, long, default_value_t = 32, conflicts_with = "every")]
    frames: usize,
    /// Take every n-th frame of each video instead of --frames.
    #[arg(value_parser = crate::flags::count::<1, 1_000_000>, long)]
    every: Option<usize>,
    /// Label written into every record.
    #[arg(long, value_enum)]
    label: Option<LabelArg>,
    /// Dataset name written into every record.
    #[arg(long)]
    dataset: Option<String>,
    /// Split written into every record.
    #[arg(long, value_enum)]
    split: Option<SplitArg>,
    /// Keep every face of an image (default: the largest only).
    #[arg(long)]
    all_faces: bool,
    /// BlazeFace model: auto = short range, full range when short range finds nothing.
    #[arg(long, value_enum, default_value_t = DetectorArg::Auto)]
    detector: DetectorArg,
    /// Minimum detector score.
    #[arg(long, default_value_t = 0.5)]
    min_score: f32,
    /// Crop side as a multiple of the face box (FSFM: 1.3).
    #[arg(value_parser = crate::flags::positive, long, default_value_t = 1.3)]
    scale: f64,
    /// Crop size in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Use BlazeFace boxes as they are instead of mapping them to dlib's framing (FSFM's detector).
    #[arg(long)]
    no_dlib_calibration: bool,
    /// Do not label hair (leave it background).
    #[arg(long)]
    no_hair: bool,
    /// Aligned crops: rotate so the eyes are level (FSFM's own crops are not aligned).
    #[arg(long)]
    align: bool,
    /// Also write overlays/NAME.png (crop + region map + landmarks) to check maps by eye.
    #[arg(long)]
    overlays: bool,
    /// Folder holding the converted face models (default: $FSVFM_HOME/models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LabelArg {
    Real,
    Fake,
    Attack,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SplitArg {
    Train,
    Val,
    Test,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DetectorArg {
    Auto,
    Short,
    Full,
}

/// Runs `fsvfm prepare`.
pub fn prepare_cmd(a: PrepareArgs) -> Result<()> {
    ensure!(a.size >= 16, "--size {} is too small", a.size);
    ensure!(a.scale > 0.0, "--scale must be positive");
    let assets = Assets::in_dir_or_home(a.models.as_deref())?;
    let options = PipelineOptions {
        detector: match a.detector {
            DetectorArg::Auto => DetectorChoice::Auto,
            DetectorArg::Short => DetectorChoice::Short,
            DetectorArg::Full => DetectorChoice::Full,
        },
        all_faces: a.all_faces,
        min_score: a.min_score,
        crop_scale: a.scale,
        size: a.size,
        calibration: if a.no_dlib_calibration {
            DlibCalibration::IDENTITY
        } else {
            DlibCalibration::FSFM_DLIB
        },
        hair: !a.no_hair,
        align: a.align,
        ..PipelineOptions::default()
    };
    let pipeline = FacePipeline::load(&assets, options).context("loading the face models")?;
    let inputs = list_inputs(&a.input)?;
    ensure!(
        !inputs.is_empty(),
        "{}: no images (png/jpg/jpeg/webp) or videos found",
        a.input.display()
    );
    let opts = PrepareOptions {
        frames: match a.every {
            Some(n) => FrameSelection::Every(n.max(1)),
            None => FrameSelection::Uniform(a.frames),
        },
        label: a.label.map(|l| match l {
            LabelArg::Real => fsvfm_data::Label::Real,
            LabelArg::Fake => fsvfm_data::Label::Fake,
            LabelArg::Attack => fsvfm_data::Label::Attack,
        }),
        dataset: a.dataset.clone(),
        split: a.split.map(|s| format!("{s:?}").to_lowercase()),
        overlays: a.overlays,
    };
    let bar = (!a.quiet).then(|| crate::pretrain::progress_bar(inputs.len() as u64));
    let start = Instant::now();
    let summary = prepare(&pipeline, &inputs, &a.output, &opts, &|| {
        if let Some(b) = &bar {
            b.inc(1);
        }
    })
    .with_context(|| format!("preparing into {}", a.output.display()))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    let done_now = summary.images + summary.videos;
    eprintln!(
        "{} inputs: {} images and {} videos processed now, {} already done; {} faces written, \
         {} skipped (see {}); {:.1} s{}",
        summary.inputs,
        summary.images,
        summary.videos,
        summary.already_done,
        summary.faces,
        summary.skipped,
        a.output.join("skipped.jsonl").display(),
        secs,
        if done_now > 0 && summary.videos == 0 {
            format!(", {:.1} images/s", summary.images as f64 / secs)
        } else {
            String::new()
        }
    );
    println!(
        "{}",
        serde_json::to_string(&summary).expect("serialisable summary")
    );
    Ok(())
}
