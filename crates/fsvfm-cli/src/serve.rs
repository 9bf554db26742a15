//! `fsvfm serve`: the detection service (crate `fsvfm-serve`) from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Args;

/// Arguments of `fsvfm serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The detector.
    #[command(flatten)]
    ck: crate::eval::CheckpointArgs,
    /// Address to bind; loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the bound address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A file holding the API key: every /v1/ request then needs `Authorization: Bearer KEY`.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Faces per forward pass, at most.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// How long to wait for more faces to fill a batch, in ms.
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
    /// Requests in flight at most; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Largest request body, in MB.
    #[arg(long, default_value_t = 50)]
    max_body_mb: usize,
    /// Most pixels an image or video frame may declare (checked before decoding).
    #[arg(long, default_value_t = 50_000_000)]
    max_pixels: u64,
    /// Longest video, in seconds.
    #[arg(long, default_value_t = 600.0)]
    max_video_s: f64,
    /// Largest video /v1/detect answers synchronously, in MB (larger: POST /v1/jobs).
    #[arg(long, default_value_t = 20)]
    max_sync_video_mb: usize,
    /// Frames taken from a video (uniformly), unless the request says.
    #[arg(long, default_value_t = 32)]
    frames: usize,
    /// Jobs held at most.
    #[arg(long, default_value_t = 64)]
    max_jobs: usize,
    /// Jobs analysed at once (the others wait, queued).
    #[arg(long, default_value_t = 2)]
    job_workers: usize,
    /// How long a finished job is kept, in seconds.
    #[arg(long, default_value_t = 3600)]
    job_ttl_s: u64,
    /// How long a request body may take to arrive, in seconds (408 after).
    #[arg(long, default_value_t = 30)]
    read_timeout_s: u64,
    /// How long a synchronous analysis may take, in seconds (504 after).
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Folder holding the converted face models (default: $FSVFM_HOME/models).
    #[arg(long)]
    models: Option<PathBuf>,
}

/// Runs `fsvfm serve` until SIGINT or SIGTERM.
pub fn serve_cmd(a: ServeArgs, precision: &str) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    ensure!(
        a.frames > 0 && a.frames <= fsvfm_serve::api::MAX_FRAMES,
        "--frames must be 1 to {}",
        fsvfm_serve::api::MAX_FRAMES
    );
    ensure!(a.queue > 0, "--queue must be at least 1");
    let api_key = match &a.api_key_file {
        Some(p) => {
            let k = std::fs::read_to_string(p)
                .with_context(|| format!("reading the API key from {}", p.display()))?;
            let k = k.trim().to_string();
            ensure!(!k.is_empty(), "{} holds no key", p.display());
            Some(k)
        }
        None => None,
    };
    fsvfm_serve::init_logging();
    let opts = fsvfm_serve::ServeOptions {
        host: a.host.clone(),
        port: a.port,
        api_key,
        batch_size: a.batch_size,
        batch_wait: Duration::from_millis(a.batch_wait_ms),
        queue: a.queue,
        max_body_mb: a.max_body_mb,
        max_pixels: a.max_pixels,
        max_video_s: a.max_video_s,
        max_sync_video_mb: a.max_sync_video_mb,
        frames: a.frames,
        max_jobs: a.max_jobs,
        job_ttl: Duration::from_secs(a.job_ttl_s),
        read_timeout: Duration::from_secs(a.read_timeout_s),
        timeout: Duration::from_secs(a.timeout_s),
        io_threads: 2,
        job_workers: a.job_workers,
        precision: precision.to_string(),
    };
    // Loaded before binding: a wrong checkpoint is a start-up error, not a 503 forever.
    let det = a.ck.load(fsvfm::DetectorOptions {
        batch_size: a.batch_size,
        frames: a.frames,
        face_models: a.models.clone(),
        ..Default::default()
    })?;
    det.ensure_face_models()
        .context("loading the face models")?;
    let name =
        a.ck.checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
    let server = fsvfm_serve::start(opts, move || Ok((det, name)), true)
        .with_context(|| format!("binding {}:{}", a.host, a.port))?;
    eprintln!("serving on http://{} (Ctrl-C to stop)", server.addr);
    server.wait().context("serving")?;
    eprintln!("stopped");
    Ok(())
}
