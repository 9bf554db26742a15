//! `fsvfm`: the command-line entry point. Each subcommand parses its arguments, calls one library
//! function, and prints; errors become one clear message and a non-zero exit.

mod adapt;
mod analysis;
mod bench;
mod demo;
mod demo_report;
mod eval;
mod fas;
mod flags;
mod forward;
mod mask;
mod predict;
mod prepare;
mod pretrain;
mod protocol;
mod report;
mod runtime;
mod serve;
mod synth;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// FS-VFM: face-security vision foundation model (pre-training, transfer, evaluation, inference).
#[derive(Parser, Debug)]
#[command(name = "fsvfm", version, about, long_about = None)]
struct Cli {
    /// Worker threads for tensor ops (default: all cores).
    #[arg(value_parser = crate::flags::THREADS, long, global = true)]
    threads: Option<usize>,
    /// Compute device: `cpu`, or `cuda[:N]` in builds with the `cuda` feature. `fsvfm pretrain`
    /// also takes a list, one data-parallel worker per entry (`cuda:0,1,2,3`, or `cpu,cpu` to
    /// verify the data-parallel path on threads); under a launcher such as `torchrun`,
    /// `cuda:local` is the GPU of `LOCAL_RANK`.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// Precision of the CPU inference kernels: `fp32`, or `bf16` (the blocks' linear layers in
    /// bf16 with fp32 accumulation: AMX tiles where the CPU has
    /// them, else AVX-512 BF16; stderr says which; ~1e-2 relative error). Applies to every
    /// inference forward of the command (predict, eval, forward, bench, a frozen backbone's
    /// feature cache, the EMA target of pre-training); training's own steps stay fp32.
    #[arg(long, global = true, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The main job on real faces: identity split, prepare, forgeries, pre-training with the
    /// ablation (random init, MAE, FS-VFM), FS-Adapter and fine-tuning, evaluation, report.html.
    Demo(demo::DemoArgs),
    /// Split real face photos by identity into train / val / test lists (the demo's first stage).
    SplitIdentities(demo::SplitArgs),
    /// Run a model on a `.npy` batch and write features or logits (`[N, 3, H, W]` normalised float32 in).
    Forward(forward::ForwardArgs),
    /// Convert an official `.pth` checkpoint to safetensors, or safetensors to an official-layout `.pth`.
    Convert(forward::ConvertArgs),
    /// Describe a weight file: format, model family, tensors, parameters.
    Inspect(forward::InspectArgs),
    /// The encoder's mean attention distance and head-diversity KL per block and head (FS-VFM
    /// Fig. 4), for one or more checkpoints on the same images.
    AttentionStats(analysis::AttentionStatsArgs),
    /// The last block's class-token attention of one or more checkpoints on the same faces,
    /// side by side in one titled grid (FS-VFM Fig. 5).
    AttentionMaps(analysis::AttentionMapsArgs),
    /// Facial-region masks for one face (CRFR-P and the alternatives), as JSON or a picture.
    Mask(mask::MaskArgs),
    /// Metrics (AUC, EER, AP, ACC, HTER, TPR@FPR1%, video AUC/EER) from a CSV of labels and scores.
    EvalScores(eval::EvalScoresArgs),
    /// Score labelled test sets with a classifier checkpoint: metrics.json, report.md, ROC and histograms.
    Eval(eval::EvalArgs),
    /// Fit a checkpoint's temperature and verdict threshold (target FPR or EER) on a labelled
    /// validation set; written into its fsvfm.json.
    Calibrate(eval::CalibrateArgs),
    /// Measure inference throughput and peak memory of a preset on random weights.
    Bench(bench::BenchArgs),
    /// Fully fine-tune a pre-trained encoder as a real/fake classifier (layer-wise lr decay, drop path).
    Finetune(adapt::FinetuneArgs),
    /// Train an FS-Adapter (CE + Real-Anchor loss) on a frozen pre-trained backbone, on cached features.
    Adapt(adapt::AdaptArgs),
    /// A transfer protocol from a TOML file: train on each set (seeds), test on every set, results table.
    Protocol(protocol::ProtocolArgs),
    /// Cross-domain face anti-spoofing: the FAS head, leave-one-domain-out, seeds, HTER/AUC/TPR@FPR.
    Fas(fas::FasArgs),
    /// Self-supervised FS-VFM pre-training (MIM + ID, CRFR-P masks, EMA target); resumable.
    Pretrain(pretrain::PretrainArgs),
    /// The pre-training loss terms of one batch (verification against the reference), as JSON.
    PretrainLoss(pretrain::PretrainLossArgs),
    /// Detect, crop (FSFM 1.3x box, 224) and parse faces in photos/videos: crops, region maps, manifest.
    Prepare(prepare::PrepareArgs),
    /// P(fake) for every face in images, folders and videos (JSON lines or a table), with heat maps.
    Predict(predict::PredictArgs),
    /// The detection service: HTTP API (OpenAPI at /openapi.json), web page, dynamic batching,
    /// video jobs, metrics; binds 127.0.0.1 unless told otherwise.
    Serve(serve::ServeArgs),
    /// Forgeries (self-blended images, face swaps) and print/replay attacks from a prepared manifest.
    Synth(synth::SynthArgs),
    /// Write synthetic faces with exact region maps (official layout), for demos and tests.
    SyntheticFaces(pretrain::SyntheticFacesArgs),
}

fn main() {
    runtime::configure_allocator();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        runtime::quiet_broken_pipe();
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    runtime::configure_threads(cli.threads)?;
    let device = runtime::resolve_local_rank(&cli.device, |k| std::env::var(k).ok())?;
    runtime::configure_device(&device, matches!(cli.command, Command::Pretrain(_)))?;
    runtime::configure_precision(&cli.precision)?;
    // Inference-only commands never change a model's weights after loading: each block's host
    // copy (and bf16 pack) is made once instead of per forward.
    let inference_only = match &cli.command {
        Command::Predict(_)
        | Command::Eval(_)
        | Command::Forward(_)
        | Command::Calibrate(_)
        | Command::AttentionStats(_)
        | Command::AttentionMaps(_) => true,
        Command::Bench(b) => !b.train && !b.finetune,
        _ => false,
    };
    fsvfm_model::cpu_kernels::set_frozen_weights(inference_only);
    match cli.command {
        Command::Demo(a) => demo::demo_cmd(a, cli.threads, &cli.device, &cli.precision),
        Command::SplitIdentities(a) => demo::split_cmd(a),
        Command::Forward(a) => forward::forward(a),
        Command::Convert(a) => forward::convert(a),
        Command::Inspect(a) => forward::inspect(a),
        Command::AttentionStats(a) => analysis::attention_stats(a),
        Command::AttentionMaps(a) => analysis::attention_maps(a),
        Command::Mask(a) => mask::mask(a),
        Command::EvalScores(a) => eval::eval_scores(a),
        Command::Eval(a) => eval::eval(a),
        Command::Calibrate(a) => eval::calibrate(a),
        Command::Bench(a) => bench::bench(a),
        Command::Adapt(a) => adapt::adapt_cmd(a),
        Command::Finetune(a) => adapt::finetune_cmd(a),
        Command::Protocol(a) => protocol::protocol_cmd(a),
        Command::Fas(a) => fas::fas_cmd(a),
        Command::Pretrain(a) => pretrain::pretrain_cmd(a),
        Command::PretrainLoss(a) => pretrain::pretrain_loss(a),
        Command::SyntheticFaces(a) => pretrain::synthetic_faces(a),
        Command::Prepare(a) => prepare::prepare_cmd(a),
        Command::Predict(a) => predict::predict_cmd(a),
        Command::Serve(a) => serve::serve_cmd(a, &cli.precision),
        Command::Synth(a) => synth::synth_cmd(a),
    }
}
