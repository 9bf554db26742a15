//! The HTTP API: handlers, their request and response types (the OpenAPI document is generated
//! from these), and the analysis they share.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use fsvfm::Detector;
use fsvfm::faces::video::{FrameSelection, frame_count, frame_indices, probe, read_frames};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::jobs::{JobHandle, JobStatus, JobView};
use crate::media::{Kind, Upload, decode_checked, image_dimensions, read_upload, sniff};
use crate::{App, Loaded};
use tokio::sync::OwnedSemaphorePermit;

/// Most frames a request may ask for.
pub const MAX_FRAMES: usize = 256;

/// Query of `POST /v1/detect` and `POST /v1/jobs`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetectQuery {
    /// Score every face (default: the largest face of the image or of each frame).
    #[serde(default)]
    pub all_faces: bool,
    /// Add each face's attention heat map (PNG, base64).
    #[serde(default)]
    pub explain: bool,
    /// The input is a face crop already: no detection, resized to the model's input.
    #[serde(default)]
    pub crops: bool,
    /// Frames taken from a video, uniformly (default: the server's `--frames`; at most 256).
    pub frames: Option<usize>,
}

/// `real`, `suspect` or `fake`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Under the suspect band.
    Real,
    /// In `[suspect_threshold, threshold)`.
    Suspect,
    /// At or above the threshold.
    Fake,
}

impl From<fsvfm::Verdict> for Verdict {
    fn from(v: fsvfm::Verdict) -> Self {
        match v {
            fsvfm::Verdict::Real => Verdict::Real,
            fsvfm::Verdict::Suspect => Verdict::Suspect,
            fsvfm::Verdict::Fake => Verdict::Fake,
        }
    }
}

/// One scored face.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FaceResult {
    /// Detector box `[x0, y0, x1, y1]` in source pixels (absent for crops).
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f32>>)]
    pub bbox: Option<[f32; 4]>,
    /// P(fake), calibrated when the checkpoint is.
    pub p_fake: f64,
    /// The verdict at the checkpoint's threshold.
    pub verdict: Verdict,
    /// 0 = the largest face of its image or frame.
    pub face_index: usize,
    /// The video frame (videos only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<usize>,
    /// The frame's time in seconds (videos only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_s: Option<f64>,
    /// The crop with its attention heat map blended in, PNG, base64 (`explain=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap_png: Option<String>,
}

/// One video frame and its faces.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FrameResult {
    /// Frame index.
    pub frame: usize,
    /// Its time in seconds.
    pub time_s: f64,
    /// Its faces (empty: none found).
    pub faces: Vec<FaceResult>,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Timing {
    /// Reading and decoding the media.
    pub decode: f64,
    /// Finding and cropping faces.
    pub detect: f64,
    /// Queueing and scoring (the batched forward pass).
    pub score: f64,
    /// Heat maps (`explain=true`).
    pub explain: f64,
    /// The whole analysis.
    pub total: f64,
}

/// The answer of `POST /v1/detect` (and a job's result).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectResponse {
    /// `image` or `video`.
    pub media: String,
    /// Every scored face, in `fsvfm predict`'s order (frames in order, largest face first).
    pub faces: Vec<FaceResult>,
    /// The input's P(fake): an image's largest (or, with `all_faces`, most fake) face; a video's
    /// mean over its scored faces, as `fsvfm predict`'s video line.
    pub p_fake: f64,
    /// The verdict of `p_fake`.
    pub verdict: Verdict,
    /// Whether the checkpoint was calibrated (`fsvfm calibrate`); if not, the threshold is 0.5.
    pub calibrated: bool,
    /// Videos: every frame taken, with its faces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<Vec<FrameResult>>,
    /// Time spent.
    pub timing_ms: Timing,
}

/// The encoder's shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Architecture {
    /// Input side in pixels.
    pub img_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Width.
    pub embed_dim: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Readout (`avg` or `token`).
    pub global_pool: String,
}

/// `GET /v1/model`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// `finetune`, `adapter` or `fas`.
    pub kind: String,
    /// The encoder.
    pub architecture: Architecture,
    /// Class names in head order.
    pub classes: Vec<String>,
    /// Which class is fake.
    pub fake_index: usize,
    /// `fake` at or above this P(fake).
    pub threshold: f64,
    /// `suspect` from this P(fake).
    pub suspect_threshold: f64,
    /// Softmax temperature.
    pub temperature: f64,
    /// Whether `fsvfm calibrate` fitted the above.
    pub calibrated: bool,
    /// The validation operating point of the threshold (calibrated checkpoints).
    #[schema(value_type = Option<Object>)]
    pub operating_point: Option<fsvfm::OperatingPoint>,
    /// Inference precision of the CPU kernels (`fp32`, `bf16`).
    pub precision: String,
    /// The fsvfm version serving.
    pub version: String,
    /// The weight file's name.
    pub checkpoint: String,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// `ok`, or `loading` before the model is ready.
    pub status: String,
}

/// `POST /v1/jobs` (202).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobCreated {
    /// Poll `GET /v1/jobs/{id}`.
    pub id: String,
    /// `queued`.
    pub status: JobStatus,
}

/// The OpenAPI 3.1 document of the service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "fsvfm",
        description = "FS-VFM face-forgery and spoofing detection service."
    ),
    paths(
        healthz, readyz, model, detect, create_job, get_job, delete_job, metrics
    ),
    components(schemas(
        ErrorBody,
        DetectResponse,
        FaceResult,
        FrameResult,
        Timing,
        Verdict,
        ModelInfo,
        Architecture,
        Status,
        JobCreated,
        JobView,
        JobStatus
    ))
)]
pub struct ApiDoc;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// Readiness: 200 once the model is loaded, 503 before.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Status>, ApiError> {
    app.loaded()?;
    Ok(Json(Status {
        status: "ok".into(),
    }))
}

/// The loaded detector: kind, architecture, classes, threshold, calibration, precision.
#[utoipa::path(get, path = "/v1/model", responses((status = 200, body = ModelInfo), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model(State(app): State<Arc<App>>) -> Result<Json<ModelInfo>, ApiError> {
    Ok(Json(app.loaded()?.info.clone()))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (depth, ready) = match app.model.get() {
        Some(m) => (m.batcher.depth(), true),
        None => (0, false),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(depth, app.jobs.len(), ready),
    )
        .into_response()
}

fn query(req: &Request) -> Result<DetectQuery, ApiError> {
    let q: DetectQuery = serde_urlencoded::from_str(req.uri().query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    if let Some(f) = q.frames
        && !(1..=MAX_FRAMES).contains(&f)
    {
        return Err(ApiError::bad_request(format!(
            "frames={f}: give 1 to {MAX_FRAMES}"
        )));
    }
    if q.crops && q.all_faces {
        return Err(ApiError::bad_request(
            "crops=true and all_faces=true: a crop is one face",
        ));
    }
    Ok(q)
}

/// Scores the faces of one image, or of a short video (up to `--max-sync-video-mb`; longer
/// ones go to `/v1/jobs`). The body is the file's bytes (`image/*`, `video/*`,
/// `application/octet-stream`) or `multipart/form-data` with a field `file`.
#[utoipa::path(
    post,
    path = "/v1/detect",
    params(DetectQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "An image (JPEG, PNG, WebP) or a video (MP4, MOV, MKV, WebM, AVI, MPEG)."),
    responses(
        (status = 200, body = DetectResponse),
        (status = 400, description = "unreadable_media, bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 408, description = "request_timeout: the body did not arrive in time", body = ErrorBody),
        (status = 413, description = "payload_too_large, video_too_long", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "no_face_detected", body = ErrorBody),
        (status = 503, description = "overloaded (with Retry-After), not_ready", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub async fn detect(
    State(app): State<Arc<App>>,
    req: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let loaded = app.loaded()?;
    let q = query(&req)?;
    let _permit = app.admit()?;
    let upload = read_upload(req, app.opts.max_body_bytes(), app.opts.read_timeout).await?;
    let timeout = app.opts.timeout;
    match tokio::time::timeout(timeout, analyse(&app, &loaded, upload, &q, None, true)).await {
        Ok(r) => r.map(Json),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the analysis took over {} s (--timeout-s)",
                timeout.as_secs()
            ),
        )),
    }
}

/// Starts a background analysis of a video (or image); poll `GET /v1/jobs/{id}`.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    params(DetectQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 202, body = JobCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn create_job(
    State(app): State<Arc<App>>,
    req: Request,
) -> Result<(StatusCode, Json<JobCreated>), ApiError> {
    let loaded = app.loaded()?;
    let q = query(&req)?;
    let upload = {
        let _permit = app.admit()?;
        read_upload(req, app.opts.max_body_bytes(), app.opts.read_timeout).await?
    };
    // What the bytes are is checked now, so a wrong upload is a 4xx, not a failed job.
    sniff(&upload.bytes)?;
    let job = app.jobs.create()?;
    app.metrics.job();
    let id = job.id().to_string();
    let a = app.clone();
    tokio::spawn(async move {
        // Jobs run a few at a time (`--job-workers`); the others stay queued.
        let Ok(_slot) = a.job_slots.clone().acquire_owned().await else {
            return;
        };
        if job.cancelled() {
            return;
        }
        let r = analyse(&a, &loaded, upload, &q, Some(&job), false).await;
        if !job.cancelled() {
            job.finish(r);
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(JobCreated {
            id,
            status: JobStatus::Queued,
        }),
    ))
}

/// A job's status, progress and (when done) result.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path)), responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    app.jobs.get(&id).map(Json).ok_or_else(|| unknown_job(&id))
}

/// Deletes a job (cancelling it if it runs).
#[utoipa::path(delete, path = "/v1/jobs/{id}", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.jobs.delete(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_job(&id))
    }
}

fn unknown_job(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no job `{id}` (unknown, deleted, or expired after --job-ttl-s)"),
    )
}

/// Runs `f` on the rayon pool (decoding, detection, heat maps): the pool the forward pass uses
/// too, so CPU work never exceeds its threads. A panic becomes a 500.
pub(crate) async fn cpu<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(ApiError::internal(
            "a worker failed while analysing the request",
        )),
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn library_error(e: fsvfm::Error) -> ApiError {
    match e {
        fsvfm::Error::Input { reason, .. } => ApiError::unreadable(reason),
        fsvfm::Error::Faces(fsvfm::faces::FaceError::Input(reason)) => ApiError::unreadable(reason),
        other => ApiError::internal(other.to_string()),
    }
}

/// Decoded frames: `(frame index, time in seconds, image)`; images have no index.
type Frames = Vec<(Option<usize>, f64, RgbImage)>;

/// A frame's faces: `(frame index, time, [(box, crop)])`.
type FoundFaces = (Option<usize>, f64, Vec<(Option<[f32; 4]>, RgbImage)>);

/// Decoded pixels held by requests at once: `DECODED_BUDGET × --max-pixels` (an image may declare
/// at most `--max-pixels`; a video's frames taken together as much as this budget).
pub const DECODED_BUDGET: u64 = 4;

/// Permits of the decoded-pixel budget for `pixels` (one per 1024 pixels).
pub(crate) fn kilopixels(pixels: u64) -> u32 {
    u32::try_from(pixels.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Decodes the upload; returns its frames, whether it is a video, and its share of the
/// decoded-pixel budget, held until the analysis ends (requests wait for their share, so the
/// pixels held at once stay bounded however many requests are in flight).
async fn decode(
    app: &App,
    upload: Upload,
    q: &DetectQuery,
    sync: bool,
) -> Result<(Frames, bool, OwnedSemaphorePermit), ApiError> {
    let max_pixels = app.opts.max_pixels;
    let budget = |pixels: u64| {
        let sem = app.pixel_budget.clone();
        async move {
            sem.acquire_many_owned(kilopixels(pixels))
                .await
                .map_err(|_| ApiError::internal("the decoding budget is closed"))
        }
    };
    match sniff(&upload.bytes)? {
        Kind::Image(format) => {
            let (w, h) = image_dimensions(&upload.bytes, format, max_pixels)?;
            let share = budget(u64::from(w) * u64::from(h)).await?;
            let bytes = upload.bytes;
            let img = cpu(move || decode_checked(&bytes, format, max_pixels)).await??;
            Ok((vec![(None, 0.0, img)], false, share))
        }
        Kind::Video(ext) => {
            if q.crops {
                return Err(ApiError::bad_request(
                    "crops=true takes images only, not videos",
                ));
            }
            if sync && upload.bytes.len() > app.opts.max_sync_video_bytes() {
                return Err(ApiError::too_large(format!(
                    "a {:.1} MB video is over the synchronous limit of {} MB (--max-sync-video-mb): POST it to /v1/jobs",
                    upload.bytes.len() as f64 / (1 << 20) as f64,
                    app.opts.max_sync_video_mb
                )));
            }
            let frames = q.frames.unwrap_or(app.opts.frames);
            let max_s = app.opts.max_video_s;
            let video =
                cpu(move || open_video(&upload.bytes, ext, frames, max_pixels, max_s)).await??;
            let total = video.indices.len() as u64
                * u64::from(video.info.width)
                * u64::from(video.info.height);
            let limit = DECODED_BUDGET * max_pixels;
            if total > limit {
                return Err(ApiError::too_large(format!(
                    "{} frames of {}×{} are {total} pixels, over the limit of {limit} ({DECODED_BUDGET} × --max-pixels): ask for fewer frames",
                    video.indices.len(),
                    video.info.width,
                    video.info.height
                )));
            }
            let share = budget(total).await?;
            let frames = cpu(move || read_video(video)).await??;
            Ok((frames, true, share))
        }
    }
}

/// An uploaded video on disk, checked from its headers, with the frames to take.
struct OpenVideo {
    file: tempfile::NamedTempFile,
    info: fsvfm::faces::video::VideoInfo,
    indices: Vec<usize>,
}

fn unreadable_video(path: &std::path::Path) -> impl Fn(fsvfm::faces::FaceError) -> ApiError + '_ {
    move |e| match e {
        fsvfm::faces::FaceError::Input(r) => ApiError::unreadable(strip_path(&r, path)),
        other => ApiError::internal(other.to_string()),
    }
}

fn open_video(
    bytes: &[u8],
    ext: &str,
    frames: usize,
    max_pixels: u64,
    max_s: f64,
) -> Result<OpenVideo, ApiError> {
    let mut file = tempfile::Builder::new()
        .prefix("fsvfm-upload-")
        .suffix(&format!(".{ext}"))
        .tempfile()
        .map_err(|e| ApiError::internal(format!("temporary file: {e}")))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| ApiError::internal(format!("temporary file: {e}")))?;
    let path = file.path().to_path_buf();
    let info = probe(&path).map_err(unreadable_video(&path))?;
    if info.duration_s > max_s {
        return Err(ApiError::video_too_long(format!(
            "the video lasts {:.1} s, over the limit of {max_s} s (--max-video-s)",
            info.duration_s
        )));
    }
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > max_pixels {
        return Err(ApiError::too_large(format!(
            "video frames of {}×{} = {pixels} pixels, over the limit of {max_pixels} (--max-pixels)",
            info.width, info.height
        )));
    }
    let n = frame_count(&path).map_err(unreadable_video(&path))?;
    Ok(OpenVideo {
        file,
        info,
        indices: frame_indices(n, FrameSelection::Uniform(frames)),
    })
}

fn read_video(v: OpenVideo) -> Result<Frames, ApiError> {
    let path = v.file.path();
    let decoded = read_frames(path, &v.indices).map_err(unreadable_video(path))?;
    if decoded.is_empty() {
        return Err(ApiError::unreadable(
            "no frame of the video could be decoded",
        ));
    }
    let fps = v.info.fps;
    Ok(decoded
        .into_iter()
        .map(|(i, img)| {
            let t = if fps > 0.0 { i as f64 / fps } else { 0.0 };
            (Some(i), t, img)
        })
        .collect())
}

/// Messages name the upload's temporary file; the client knows it only as its upload.
fn strip_path(reason: &str, path: &std::path::Path) -> String {
    reason.replace(&format!("{}: ", path.display()), "")
}

/// Decode → detect → score (batched) → explain, for `/v1/detect` and jobs.
pub(crate) async fn analyse(
    app: &App,
    loaded: &Loaded,
    upload: Upload,
    q: &DetectQuery,
    job: Option<&JobHandle>,
    sync: bool,
) -> Result<DetectResponse, ApiError> {
    let start = Instant::now();
    // Batches forming now may wait for this request's faces (until it submits or fails).
    let coming = loaded.batcher.expect();
    let mut timing = Timing::default();
    let t = Instant::now();
    let (frames, video, _share) = decode(app, upload, q, sync).await?;
    timing.decode = ms(t);
    let t = Instant::now();
    let total = frames.len();
    let mut found: Vec<FoundFaces> = Vec::with_capacity(total);
    // Frames are detected one pool task each, in flight together.
    let mut tasks = Vec::with_capacity(total);
    for (frame, time, img) in frames {
        let det = loaded.det.clone();
        let (all, crops) = (q.all_faces, q.crops);
        tasks.push((frame, time, cpu(move || det.faces_in(&img, all, crops))));
    }
    for (k, (frame, time, task)) in tasks.into_iter().enumerate() {
        let crops = task.await?.map_err(library_error)?;
        found.push((frame, time, crops));
        if let Some(j) = job {
            if j.cancelled() {
                return Err(ApiError::bad_request("deleted"));
            }
            j.progress(0.9 * (k + 1) as f64 / total as f64);
        }
    }
    timing.detect = ms(t);
    let n_faces: usize = found.iter().map(|f| f.2.len()).sum();
    if n_faces == 0 {
        return Err(ApiError::no_face(if video {
            format!("no face detected in any of the {total} frames taken")
        } else {
            "no face detected in the image".to_string()
        }));
    }
    let t = Instant::now();
    let det = loaded.det.clone();
    let crops: Vec<RgbImage> = found
        .iter()
        .flat_map(|f| f.2.iter().map(|(_, c)| c.clone()))
        .collect();
    let crops = Arc::new(crops);
    let c = crops.clone();
    let x: Vec<Vec<f32>> = cpu(move || c.iter().map(|img| det.normalise(img)).collect()).await?;
    drop(coming);
    let mut scores = Vec::with_capacity(x.len());
    // Jobs queue politely: a full queue makes them wait, never fail.
    let chunk = if job.is_some() {
        app.opts.batch_size
    } else {
        x.len()
    };
    for part in x.chunks(chunk.max(1)) {
        loop {
            match loaded.batcher.score(part.to_vec()).await {
                Ok(s) => {
                    scores.extend(s);
                    break;
                }
                Err(e) if job.is_some() && e.code == "overloaded" => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    timing.score = ms(t);
    let t = Instant::now();
    let heatmaps: Vec<Option<String>> = if q.explain {
        let det = loaded.det.clone();
        let c = crops.clone();
        cpu(move || -> Result<Vec<Option<String>>, ApiError> {
            let maps = det.attention(&c).map_err(library_error)?;
            c.iter()
                .zip(maps)
                .map(|(crop, m)| {
                    let img = fsvfm::heatmap::overlay(crop, &m);
                    let mut png = Vec::new();
                    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                        .map_err(|e| ApiError::internal(format!("encoding a heat map: {e}")))?;
                    Ok(Some(base64::engine::general_purpose::STANDARD.encode(png)))
                })
                .collect()
        })
        .await??
    } else {
        vec![None; crops.len()]
    };
    timing.explain = ms(t);
    let cal = loaded.det.calibration();
    let verdict = |p: f64| Verdict::from(cal.verdict(p));
    let mut k = 0;
    let mut faces = Vec::with_capacity(n_faces);
    let mut frame_results = Vec::new();
    for (frame, time, crops) in found {
        let mut these = Vec::with_capacity(crops.len());
        for (i, (bbox, _)) in crops.into_iter().enumerate() {
            let p = f64::from(scores[k]);
            these.push(FaceResult {
                bbox,
                p_fake: p,
                verdict: verdict(p),
                face_index: i,
                frame,
                time_s: frame.map(|_| time),
                heatmap_png: heatmaps[k].clone(),
            });
            k += 1;
        }
        faces.extend(these.iter().cloned());
        if let Some(f) = frame {
            frame_results.push(FrameResult {
                frame: f,
                time_s: time,
                faces: these,
            });
        }
    }
    let p_fake = if video {
        // `fsvfm predict`'s video line: the mean over the scored faces, in f64.
        faces.iter().map(|f| f.p_fake).sum::<f64>() / faces.len() as f64
    } else {
        faces
            .iter()
            .map(|f| f.p_fake)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    timing.total = ms(start);
    Ok(DetectResponse {
        media: if video { "video" } else { "image" }.into(),
        faces,
        p_fake,
        verdict: verdict(p_fake),
        calibrated: cal.is_calibrated(),
        frames: video.then_some(frame_results),
        timing_ms: timing,
    })
}

/// The model's description for `/v1/model`.
pub(crate) fn model_info(det: &Detector, precision: &str, checkpoint: &str) -> ModelInfo {
    let m = &det.described().model;
    let cal = det.calibration();
    ModelInfo {
        kind: match det.kind() {
            fsvfm::ModelKind::Finetune => "finetune",
            fsvfm::ModelKind::Adapter => "adapter",
            fsvfm::ModelKind::Fas => "fas",
            fsvfm::ModelKind::Pretrain => "pretrain",
        }
        .into(),
        architecture: Architecture {
            img_size: m.img_size,
            patch_size: m.patch_size,
            embed_dim: m.embed_dim,
            depth: m.depth,
            num_heads: m.num_heads,
            global_pool: if m.global_pool { "avg" } else { "token" }.into(),
        },
        classes: det.class_names(),
        fake_index: det.fake_index(),
        threshold: cal.decision_threshold(),
        suspect_threshold: cal.suspect_from(),
        temperature: cal.temperature_or_one(),
        calibrated: cal.is_calibrated(),
        operating_point: cal.operating_point.clone(),
        precision: precision.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        checkpoint: checkpoint.into(),
    }
}
