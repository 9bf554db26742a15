//! `fsvfm synth`: forgeries and presentation attacks from a prepared manifest.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Args, ValueEnum};
use fsvfm_synth::run::{Kind, synth};

/// Arguments of `fsvfm synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// A `fsvfm prepare` manifest (crops with landmarks); its real faces are the sources.
    #[arg(long)]
    manifest: PathBuf,
    /// What to make.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Outputs per source face.
    #[arg(value_parser = crate::flags::count::<1, 10_000>, long, default_value_t = 1)]
    per_image: usize,
    /// Seed: the same seed gives the same images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (images/, masks/, manifest.jsonl, skipped.jsonl).
    #[arg(long)]
    output: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum KindArg {
    Sbi,
    Swap,
    Print,
    Replay,
}

/// Runs `fsvfm synth`.
pub fn synth_cmd(a: SynthArgs) -> Result<()> {
    ensure!(a.per_image > 0, "--per-image must be at least 1");
    let kind = match a.kind {
        KindArg::Sbi => Kind::Sbi,
        KindArg::Swap => Kind::Swap,
        KindArg::Print => Kind::Print,
        KindArg::Replay => Kind::Replay,
    };
    let bar = (!a.quiet).then(|| crate::pretrain::progress_bar(0));
    let start = Instant::now();
    let s = synth(
        &a.manifest,
        &a.output,
        kind,
        a.per_image,
        a.seed,
        &|total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.inc(1);
            }
        },
    )
    .with_context(|| format!("synthesising into {}", a.output.display()))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} real faces: {} {} images written, {} skipped (see {}); {:.1} s, {:.1} images/s",
        s.inputs,
        s.outputs,
        kind.name(),
        s.skipped,
        a.output.join("skipped.jsonl").display(),
        secs,
        s.outputs as f64 / secs
    );
    println!("{}", serde_json::to_string(&s).expect("serialisable"));
    Ok(())
}
