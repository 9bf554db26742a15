//! # fsvfm-serve
//!
//! `fsvfm serve`: an FS-VFM detector behind an HTTP API (axum + tokio), loaded once.
//!
//! - `GET /healthz`, `GET /readyz`, `GET /v1/model`, `POST /v1/detect`, `POST /v1/jobs`,
//!   `GET|DELETE /v1/jobs/{id}`, `GET /metrics` (Prometheus), `GET /openapi.json` (OpenAPI 3.1
//!   generated from the Rust types by utoipa), `GET /` (a web page, embedded).
//! - Every error is `{"error": {"code", "message"}}` with its status ([`error::ApiError`]).
//! - Bounds: body size, decoded pixels (checked from the header, before decoding), video
//!   duration, requests in flight (`--queue`, then 503 with `Retry-After`), decoded pixels held
//!   at once (`4 × --max-pixels`: requests wait for their share), faces queued for scoring, jobs
//!   held and jobs running (`job_workers`), body read time, analysis time.
//!
//! **Threads.** One tokio runtime with `io_threads` workers does only I/O (sockets, timers).
//! All CPU work (decoding, face detection, normalisation, heat maps, and the forward pass's
//! GEMMs) runs on the one rayon pool of `threads` threads (default: the cores), so busy threads
//! never exceed the cores. One inference thread ([`batcher`]) gathers the faces of concurrent
//! requests into batches and drives the forward pass on that pool; it mostly waits.
//! FFmpeg (videos) runs as a child process while its pool task waits on the pipe.

pub mod api;
pub mod batcher;
pub mod error;
pub mod jobs;
pub mod media;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use fsvfm::Detector;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::OpenApi;

use crate::batcher::Batcher;
use crate::error::ApiError;
use crate::jobs::Jobs;
use crate::metrics::Metrics;

/// The service's settings (the flags of `fsvfm serve`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (default 127.0.0.1: loopback only).
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// With a key, every `/v1/…` request needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Faces per forward pass, at most.
    pub batch_size: usize,
    /// How long the inference thread waits to fill a batch.
    pub batch_wait: Duration,
    /// Requests in flight (reading, analysing) at most; more get 503 `overloaded`.
    pub queue: usize,
    /// Body size limit in MB.
    pub max_body_mb: usize,
    /// Pixels an image (or video frame) may declare.
    pub max_pixels: u64,
    /// Longest video, in seconds.
    pub max_video_s: f64,
    /// Largest video `/v1/detect` analyses synchronously, in MB.
    pub max_sync_video_mb: usize,
    /// Frames taken from a video by default.
    pub frames: usize,
    /// Jobs held at most (running, queued or finished).
    pub max_jobs: usize,
    /// How long a finished job's result is kept.
    pub job_ttl: Duration,
    /// How long a request body may take to arrive (408 after).
    pub read_timeout: Duration,
    /// How long a synchronous analysis may take (504 after).
    pub timeout: Duration,
    /// Tokio I/O worker threads.
    pub io_threads: usize,
    /// Jobs analysed at once; the others wait, `queued`.
    pub job_workers: usize,
    /// Precision shown by `/v1/model` (set by the command's `--precision`).
    pub precision: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            batch_size: 16,
            batch_wait: Duration::from_millis(5),
            queue: 256,
            max_body_mb: 50,
            max_pixels: 50_000_000,
            max_video_s: 600.0,
            max_sync_video_mb: 20,
            frames: 32,
            max_jobs: 64,
            job_ttl: Duration::from_secs(3600),
            read_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(120),
            io_threads: 2,
            job_workers: 2,
            precision: "fp32".into(),
        }
    }
}

impl ServeOptions {
    fn max_body_bytes(&self) -> usize {
        self.max_body_mb.saturating_mul(1 << 20)
    }

    fn max_sync_video_bytes(&self) -> usize {
        self.max_sync_video_mb.saturating_mul(1 << 20)
    }
}

/// The loaded model: the detector, its batcher, its description.
pub struct Loaded {
    det: Arc<Detector>,
    batcher: Batcher,
    info: api::ModelInfo,
}

/// The service's shared state.
pub struct App {
    opts: ServeOptions,
    model: OnceLock<Arc<Loaded>>,
    load_error: OnceLock<String>,
    metrics: Arc<Metrics>,
    jobs: Arc<Jobs>,
    key_digest: Option<[u8; 32]>,
    inflight: Arc<Semaphore>,
    pixel_budget: Arc<Semaphore>,
    job_slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl App {
    /// State with no model yet (`/readyz` answers 503 until [`App::set_model`]).
    pub fn new(opts: ServeOptions) -> Arc<App> {
        Arc::new(App {
            key_digest: opts.api_key.as_deref().map(|k| digest(k.as_bytes())),
            inflight: Arc::new(Semaphore::new(opts.queue.max(1))),
            pixel_budget: Arc::new(Semaphore::new(api::kilopixels(
                api::DECODED_BUDGET * opts.max_pixels.max(1),
            ) as usize)),
            job_slots: Arc::new(Semaphore::new(opts.job_workers.max(1))),
            jobs: Jobs::new(opts.max_jobs, opts.job_ttl),
            metrics: Arc::new(Metrics::default()),
            model: OnceLock::new(),
            load_error: OnceLock::new(),
            next_id: AtomicU64::new(1),
            opts,
        })
    }

    /// Installs the loaded detector (its batch size is `batch_size` of the options); starts the
    /// inference thread.
    pub fn set_model(&self, det: Detector, checkpoint: &str) {
        let det = Arc::new(det);
        let info = api::model_info(&det, &self.opts.precision, checkpoint);
        let batcher = Batcher::start(
            det.clone(),
            self.opts.batch_size,
            self.opts.batch_wait,
            self.opts.queue.max(64),
            self.metrics.clone(),
        );
        let _ = self.model.set(Arc::new(Loaded { det, batcher, info }));
    }

    /// Records why the model could not be loaded (`/readyz` says it).
    pub fn set_load_error(&self, e: String) {
        let _ = self.load_error.set(e);
    }

    fn loaded(&self) -> Result<Arc<Loaded>, ApiError> {
        match (self.model.get(), self.load_error.get()) {
            (Some(m), _) => Ok(m.clone()),
            (None, Some(e)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("the model failed to load: {e}"),
            )),
            (None, None) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the model is still loading",
            )),
        }
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.inflight.clone().try_acquire_owned().map_err(|_| {
            ApiError::overloaded(format!(
                "{} requests are in flight (--queue): retry shortly",
                self.opts.queue
            ))
        })
    }

    fn authorised(&self, req: &Request) -> bool {
        let Some(want) = &self.key_digest else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Digests of equal length, compared without an early exit: the time does not depend
        // on how much of the key was right.
        let got = digest(given.trim().as_bytes());
        got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

const PAGE: &str = include_str!("page.html");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        api::ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} (see /openapi.json)", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not served on {}", req.method(), req.uri().path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("the request handler panicked; the service goes on").into_response()
}

/// Request ids, authentication of `/v1/…`, metrics and one log line per request.
async fn around(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", app.next_id.fetch_add(1, Ordering::Relaxed)));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut resp = if path.starts_with("/v1/") && !app.authorised(&req) {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this service needs `Authorization: Bearer KEY` (--api-key-file)",
        )
        .into_response()
    } else {
        next.run(req).await
    };
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    app.metrics.request(&route, status, secs);
    tracing::info!(request_id = %id, %method, %path, status, ms = secs * 1e3, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The service's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(api::metrics))
        .route("/v1/model", get(api::model))
        .route("/v1/detect", post(api::detect))
        .route("/v1/jobs", post(api::create_job))
        .route("/v1/jobs/{id}", get(api::get_job).delete(api::delete_job))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read (and bounded) by `media::read_upload`.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(app.clone(), around))
        .with_state(app)
}

/// A running service (see [`start`]): its address, and a handle to stop it.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// The shared state.
    pub app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, and waits for the server thread.
    pub fn shutdown(mut self) -> std::io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }

    /// Waits until the server stops by itself (a signal, with `signals`).
    pub fn wait(mut self) -> std::io::Result<()> {
        // Held, not dropped: a dropped sender would read as "stop now".
        let _keep = self.stop.take();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stop.is_some() {
            let _ = self.stop_and_join();
        }
    }
}

/// Binds `opts.host:opts.port` and serves on a thread of its own; the model comes from `load`,
/// run in the background after binding (so `/readyz` says 503 until it is done). With
/// `signals`, SIGINT and SIGTERM stop the server gracefully: it stops accepting, finishes the
/// requests in flight and the running jobs (up to `opts.timeout`), and returns.
pub fn start(
    opts: ServeOptions,
    load: impl FnOnce() -> Result<(Detector, String), String> + Send + 'static,
    signals: bool,
) -> std::io::Result<Server> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.io_threads.max(1))
        .thread_name("fsvfm-io")
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind((
        opts.host.as_str(),
        opts.port,
    )))?;
    let addr = listener.local_addr()?;
    let app = App::new(opts);
    let loader = app.clone();
    std::thread::Builder::new()
        .name("fsvfm-load".into())
        .spawn(move || match load() {
            Ok((det, name)) => {
                tracing::info!("model loaded: {}", det.description());
                loader.set_model(det, &name);
            }
            Err(e) => {
                tracing::error!("loading the model: {e}");
                loader.set_load_error(e);
            }
        })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The handlers are installed now, before the caller can say "serving": a SIGTERM that arrives
    // before the shutdown future is first polled must stop the server gracefully, not kill it.
    let signals = if signals {
        let _runtime = rt.enter();
        Some(Signals::install()?)
    } else {
        None
    };
    let a = app.clone();
    let thread = std::thread::Builder::new()
        .name("fsvfm-serve".into())
        .spawn(move || {
            rt.block_on(async move {
                let shutdown = async move {
                    match signals {
                        Some(mut signals) => {
                            tokio::select! {
                                _ = stopped => {},
                                _ = signals.recv() => {},
                            }
                        }
                        None => {
                            let _ = stopped.await;
                        }
                    }
                    tracing::info!("shutting down: finishing requests in flight");
                };
                let r = axum::serve(listener, router(a.clone()))
                    .with_graceful_shutdown(shutdown)
                    .await;
                // Jobs still running get their time.
                let deadline = Instant::now() + a.opts.timeout;
                while a.jobs.unfinished() > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r
            })
        })?;
    Ok(Server {
        addr,
        app,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// SIGINT and SIGTERM, registered when made (on Unix; elsewhere Ctrl-C, registered when awaited).
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers; needs a Tokio runtime context.
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for either signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {},
            _ = self.term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Structured logs to stderr: one line per request with its id (`RUST_LOG` filters; default
/// `info`). Does nothing when a subscriber is already set.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
