//! The service on loopback (port 0, stopped at the end of each test): every endpoint's shape,
//! scores equal to the library's `predict_file` (what `fsvfm predict` prints), bad inputs each
//! answered with their 4xx while the service stays healthy, the API key, 503 under overload, a
//! job's life. The model is the timm fixture classifier (2 blocks, 32 px); faces come from the
//! face models (`tools/face/setup.sh`; tests needing them skip without, and fail under
//! `FSVFM_REQUIRE_ASSETS=1` as in CI).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fsvfm::data::MeanStd;
use fsvfm::model::VitConfig;
use fsvfm::{Detector, DetectorOptions, ModelKind, ProducedBy, Sidecar};
use fsvfm_serve::{ServeOptions, Server};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fsvfm-model/tests/fixtures")
        .join(name)
}

fn astronaut() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fsvfm-faces/tests/fixtures/astronaut.jpg")
}

fn small() -> VitConfig {
    let mut c = VitConfig::new(8, 32, 2, 2);
    c.img_size = 32;
    c
}

/// The fixture classifier as one of our run folders.
fn checkpoint(dir: &Path) -> PathBuf {
    let ck = dir.join("checkpoint-min_val_loss.safetensors");
    std::fs::copy(fixture("classifier_avg.safetensors"), &ck).unwrap();
    Sidecar::classifier(
        ModelKind::Finetune,
        "checkpoint-min_val_loss.safetensors",
        &small(),
        MeanStd::VGGFACE2,
        ProducedBy {
            command: "test".into(),
            settings: Value::Null,
        },
    )
    .write(dir)
    .unwrap();
    ck
}

fn face_models() -> bool {
    if fsvfm::faces::assets::Assets::locate().is_ok() {
        return true;
    }
    assert_ne!(
        std::env::var("FSVFM_REQUIRE_ASSETS").as_deref(),
        Ok("1"),
        "face models missing"
    );
    eprintln!("skipped: face models not installed (bash tools/face/setup.sh)");
    false
}

fn ffmpeg() -> bool {
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert_ne!(
            std::env::var("FSVFM_REQUIRE_ASSETS").as_deref(),
            Ok("1"),
            "ffmpeg missing"
        );
        eprintln!("skipped: ffmpeg not installed");
    }
    ok
}

fn start(ck: &Path, opts: ServeOptions, faces: bool) -> Server {
    let ck = ck.to_path_buf();
    let server = fsvfm_serve::start(
        ServeOptions { port: 0, ..opts },
        move || {
            let d = Detector::load_with(
                &ck,
                &DetectorOptions {
                    batch_size: 16,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
            if faces {
                d.ensure_face_models().map_err(|e| e.to_string())?;
            }
            Ok((d, "checkpoint-min_val_loss.safetensors".into()))
        },
        false,
    )
    .unwrap();
    let t = Instant::now();
    while http(server.addr, "GET", "/readyz", &[], b"").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// One HTTP/1.1 exchange (`Connection: close`), body read to the end (chunked decoded).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413, 415) before reading everything and close.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + n]);
            rest = &rest[end + 4 + n..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let r = request(addr, method, path, headers, body);
    (r.status, r.body)
}

fn jpeg() -> Vec<u8> {
    std::fs::read(astronaut()).unwrap()
}

fn png_bytes(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

const JPEG: (&str, &str) = ("Content-Type", "image/jpeg");

#[test]
fn endpoints_answer_in_their_documented_shapes() {
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    let s = start(&ck, ServeOptions::default(), false);
    let a = s.addr;
    assert_eq!(a.ip().to_string(), "127.0.0.1", "loopback by default");
    let h = request(a, "GET", "/healthz", &[], b"");
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
    assert!(h.headers.contains_key("x-request-id"));
    assert_eq!(request(a, "GET", "/readyz", &[], b"").status, 200);
    let m = request(a, "GET", "/v1/model", &[], b"").json();
    assert_eq!(m["kind"], "finetune");
    assert_eq!(m["architecture"]["img_size"], 32);
    assert_eq!(m["classes"], serde_json::json!(["fake", "real"]));
    assert_eq!(
        (m["threshold"].as_f64(), m["calibrated"].as_bool()),
        (Some(0.5), Some(false))
    );
    assert_eq!(m["precision"], "fp32");
    // OpenAPI 3.1 with every route.
    let o = request(a, "GET", "/openapi.json", &[], b"").json();
    assert!(
        o["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        o["openapi"]
    );
    for p in [
        "/healthz",
        "/readyz",
        "/v1/model",
        "/v1/detect",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/metrics",
    ] {
        assert!(
            o["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(o["components"]["schemas"].get("DetectResponse").is_some());
    // A crop scored through the API equals the library's score.
    let crop = image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 6) as u8, 120])
    });
    let r = request(
        a,
        "POST",
        "/v1/detect?crops=true",
        &[("Content-Type", "image/png")],
        &png_bytes(&crop),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let want = Detector::load(&ck).unwrap().score_crops(&[crop]).unwrap()[0];
    assert!((v["p_fake"].as_f64().unwrap() - f64::from(want)).abs() <= 1e-6);
    assert_eq!(
        v["faces"][0]["verdict"],
        if want >= 0.5 {
            "fake"
        } else if want >= 0.3 {
            "suspect"
        } else {
            "real"
        }
    );
    assert_eq!(v["calibrated"], false);
    assert!(v["faces"][0].get("box").is_none());
    for k in ["decode", "detect", "score", "explain", "total"] {
        assert!(v["timing_ms"][k].as_f64().is_some(), "timing_ms.{k}");
    }
    // Errors are JSON with a code, also for unknown routes and methods.
    let nf = request(a, "GET", "/nope", &[], b"");
    assert_eq!((nf.status, nf.code().as_str()), (404, "not_found"));
    let na = request(a, "GET", "/v1/detect", &[], b"");
    assert_eq!((na.status, na.code().as_str()), (405, "method_not_allowed"));
    let page = request(a, "GET", "/", &[], b"");
    assert!(String::from_utf8_lossy(&page.body).contains("<title>fsvfm"));
    let met = String::from_utf8(request(a, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(
        met.contains("fsvfm_requests_total{route=\"/v1/detect\",status=\"200\"} 1"),
        "{met}"
    );
    assert!(met.contains("fsvfm_faces_scored_total 1"), "{met}");
    assert!(
        met.contains("fsvfm_request_duration_seconds_bucket{route=\"/healthz\""),
        "{met}"
    );
    s.shutdown().unwrap();
}

#[test]
fn faces_score_as_predict_does_whatever_the_batching() {
    if !face_models() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    let s = start(
        &ck,
        ServeOptions {
            batch_wait: Duration::from_millis(20),
            ..Default::default()
        },
        true,
    );
    let det = Detector::load(&ck).unwrap();
    let want = det.predict_file(astronaut()).unwrap();
    assert_eq!(want.len(), 1);
    // Eight clients at once: their faces share batches.
    let addr = s.addr;
    let answers: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| sc.spawn(move || request(addr, "POST", "/v1/detect", &[JPEG], &jpeg()).json()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &answers {
        let f = &v["faces"][0];
        assert!(
            (f["p_fake"].as_f64().unwrap() - f64::from(want[0].p_fake)).abs() <= 1e-6,
            "{v}"
        );
        let b: Vec<f64> = f["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let wb = want[0].bbox.unwrap();
        assert!(
            b.iter()
                .zip(wb)
                .all(|(a, w)| (a - f64::from(w)).abs() < 1e-3),
            "{b:?} {wb:?}"
        );
        assert_eq!(v["media"], "image");
    }
    let met = String::from_utf8(request(addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(met.contains("fsvfm_faces_scored_total 8"), "{met}");
    // Two astronauts side by side, one smaller: all_faces gives both, largest first; by default
    // only the largest; multipart bodies work as raw ones.
    // Tiles cut tightly around the face, so both faces stay large enough for the short-range
    // detector once the pair is letterboxed to its input.
    let photo = image::open(astronaut()).unwrap().to_rgb8();
    let [x0, y0, x1, y1] = want[0].bbox.unwrap();
    let side = (1.6 * (x1 - x0).max(y1 - y0)) as u32;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let left = (cx as i64 - i64::from(side) / 2).clamp(0, i64::from(photo.width() - side)) as u32;
    let top = (cy as i64 - i64::from(side) / 2).clamp(0, i64::from(photo.height() - side)) as u32;
    let one = image::imageops::crop_imm(&photo, left, top, side, side).to_image();
    let small = image::imageops::resize(
        &one,
        one.width() * 4 / 5,
        one.height() * 4 / 5,
        image::imageops::FilterType::Triangle,
    );
    let mut two = image::RgbImage::from_pixel(
        one.width() + small.width(),
        one.height(),
        image::Rgb([0, 0, 0]),
    );
    image::imageops::replace(&mut two, &one, 0, 0);
    image::imageops::replace(&mut two, &small, i64::from(one.width()), 0);
    let lib_all = Detector::load_with(
        &ck,
        &DetectorOptions {
            all_faces: true,
            ..Default::default()
        },
    )
    .unwrap()
    .predict_image(&two)
    .unwrap();
    assert_eq!(lib_all.len(), 2);
    let body = png_bytes(&two);
    let boundary = "XfsvfmBoundaryX";
    let mut mp = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"two.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes();
    mp.extend(&body);
    mp.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let all = request(
        addr,
        "POST",
        "/v1/detect?all_faces=true&explain=true",
        &[("Content-Type", &ct)],
        &mp,
    )
    .json();
    let faces = all["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 2, "{all}");
    for (f, w) in faces.iter().zip(&lib_all) {
        assert!((f["p_fake"].as_f64().unwrap() - f64::from(w.p_fake)).abs() <= 1e-6);
    }
    assert_eq!(
        (
            faces[0]["face_index"].as_u64(),
            faces[1]["face_index"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let heat = faces[0]["heatmap_png"].as_str().unwrap();
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(heat)
        .unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 32);
    let max = lib_all
        .iter()
        .map(|f| f64::from(f.p_fake))
        .fold(0.0, f64::max);
    assert!((all["p_fake"].as_f64().unwrap() - max).abs() <= 1e-6);
    let largest = request(
        addr,
        "POST",
        "/v1/detect",
        &[("Content-Type", "image/png")],
        &body,
    )
    .json();
    assert_eq!(largest["faces"].as_array().unwrap().len(), 1);
    s.shutdown().unwrap();
}

/// A short MP4 of the astronaut photo (25 frames, 1 s), made with FFmpeg.
fn video(dir: &Path) -> PathBuf {
    let out = dir.join("clip.mp4");
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-i"])
        .arg(astronaut())
        .args([
            "-t",
            "1",
            "-r",
            "25",
            "-vf",
            "scale=256:-2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "mpeg4",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn bad_inputs_get_their_4xx_and_the_service_stays_healthy() {
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    let s = start(
        &ck,
        ServeOptions {
            max_body_mb: 1,
            read_timeout: Duration::from_secs(1),
            max_pixels: 4_000_000,
            max_video_s: 0.5,
            ..Default::default()
        },
        false,
    );
    let a = s.addr;
    let post = |ct: &str, body: &[u8]| {
        request(
            a,
            "POST",
            "/v1/detect?crops=true",
            &[("Content-Type", ct)],
            body,
        )
    };
    let check = |r: Resp, status: u16, code: &str| {
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    };
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    check(
        post("application/octet-stream", &noise),
        400,
        "unreadable_media",
    );
    let j = jpeg();
    check(
        post("image/jpeg", &j[..j.len() / 3]),
        400,
        "unreadable_media",
    );
    let png = png_bytes(&image::RgbImage::from_pixel(
        64,
        64,
        image::Rgb([10, 20, 30]),
    ));
    check(
        post("image/png", &png[..png.len() - 20]),
        400,
        "unreadable_media",
    );
    check(post("image/png", b""), 400, "unreadable_media");
    check(post("text/plain", b"hello"), 415, "unsupported_media_type");
    check(
        post("application/json", b"{}"),
        415,
        "unsupported_media_type",
    );
    check(
        post("image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        415,
        "unsupported_media_type",
    );
    // A decompression bomb: a PNG whose header declares 60000×60000.
    let bomb = {
        let mut b = png_bytes(&image::RgbImage::new(1, 1));
        b[16..20].copy_from_slice(&60000u32.to_be_bytes());
        b[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let mut c = !0u32;
        for &x in &b[12..29] {
            c ^= u32::from(x);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        b[29..33].copy_from_slice(&(!c).to_be_bytes());
        b
    };
    check(post("image/png", &bomb), 413, "payload_too_large");
    // Over --max-body-mb, raw and multipart.
    let big = vec![0u8; 3 << 20];
    check(
        post("application/octet-stream", &big),
        413,
        "payload_too_large",
    );
    let mut mp =
        b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\nContent-Type: image/png\r\n\r\n"
            .to_vec();
    mp.extend(&big);
    mp.extend(b"\r\n--B--\r\n");
    check(
        post("multipart/form-data; boundary=B", &mp),
        413,
        "payload_too_large",
    );
    check(
        post(
            "multipart/form-data; boundary=B",
            b"--B\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--B--\r\n",
        ),
        400,
        "bad_request",
    );
    // A client that announces a body and stops sending: 408 after --read-timeout.
    {
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\nabc").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = vec![0u8; 4096];
        let n = c.read(&mut raw).unwrap();
        let r = parse(&raw[..n]);
        assert_eq!((r.status, r.code().as_str()), (408, "request_timeout"));
    }
    check(
        request(a, "POST", "/v1/detect?frames=0", &[JPEG], &j),
        400,
        "bad_request",
    );
    check(
        request(a, "POST", "/v1/detect?all_faces=maybe", &[JPEG], &j),
        400,
        "bad_request",
    );
    if ffmpeg() {
        let v = std::fs::read(video(d.path())).unwrap();
        // Truncated MP4: its header is there, the data is not.
        check(
            request(
                a,
                "POST",
                "/v1/detect",
                &[("Content-Type", "video/mp4")],
                &v[..v.len() / 4],
            ),
            400,
            "unreadable_media",
        );
        check(
            request(
                a,
                "POST",
                "/v1/detect",
                &[("Content-Type", "video/mp4")],
                &v,
            ),
            413,
            "video_too_long",
        );
    }
    // Still healthy, and still scoring.
    assert_eq!(request(a, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(post("image/png", &png).status, 200);
    s.shutdown().unwrap();
}

#[test]
fn the_key_guards_v1_and_a_full_queue_answers_503() {
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    let s = start(
        &ck,
        ServeOptions {
            api_key: Some("s3cret-key".into()),
            queue: 1,
            read_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        false,
    );
    let a = s.addr;
    let png = png_bytes(&image::RgbImage::from_pixel(
        32,
        32,
        image::Rgb([10, 200, 30]),
    ));
    let ct = ("Content-Type", "image/png");
    let r = request(a, "POST", "/v1/detect?crops=true", &[ct], &png);
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let r = request(
        a,
        "GET",
        "/v1/model",
        &[("Authorization", "Bearer s3cret-kez")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(request(a, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(a, "GET", "/readyz", &[], b"").status, 200);
    let auth = ("Authorization", "Bearer s3cret-key");
    assert_eq!(
        request(a, "POST", "/v1/detect?crops=true", &[ct, auth], &png).status,
        200
    );
    // One slow upload holds the only slot: the next request is turned away with Retry-After.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.write_all(b"POST /v1/detect?crops=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-key\r\nContent-Type: image/png\r\nContent-Length: 500\r\n\r\nab").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = request(a, "POST", "/v1/detect?crops=true", &[ct, auth], &png);
    assert_eq!((r.status, r.code().as_str()), (503, "overloaded"));
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
    drop(slow);
    let t = Instant::now();
    loop {
        let r = request(a, "POST", "/v1/detect?crops=true", &[ct, auth], &png);
        if r.status == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.shutdown().unwrap();
}

#[test]
fn a_video_job_runs_reports_progress_and_is_deleted() {
    if !face_models() || !ffmpeg() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    let s = start(
        &ck,
        ServeOptions {
            frames: 4,
            ..Default::default()
        },
        true,
    );
    let a = s.addr;
    let clip = video(d.path());
    let bytes = std::fs::read(&clip).unwrap();
    let r = request(
        a,
        "POST",
        "/v1/jobs",
        &[("Content-Type", "video/mp4")],
        &bytes,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let done = loop {
        let j = request(a, "GET", &format!("/v1/jobs/{id}"), &[], b"").json();
        let p = j["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        match j["status"].as_str().unwrap() {
            "done" => break j,
            "failed" => panic!("{j}"),
            _ => {}
        }
        assert!(t.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50));
    };
    let res = &done["result"];
    assert_eq!(res["media"], "video");
    let frames = res["frames"].as_array().unwrap();
    // np.linspace(0, 24, 4).astype(int) = 0, 8, 16, 24; at 25 fps.
    let idx: Vec<u64> = frames
        .iter()
        .map(|f| f["frame"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 8, 16, 24]);
    assert!((frames[1]["time_s"].as_f64().unwrap() - 0.32).abs() < 1e-9);
    // The library on the same file: the same faces and the same video score.
    let det = Detector::load_with(
        &ck,
        &DetectorOptions {
            frames: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let want = det.predict_file(&clip).unwrap();
    let got = res["faces"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g["p_fake"].as_f64().unwrap() - f64::from(w.p_fake)).abs() <= 1e-6);
        assert_eq!(g["frame"].as_u64(), w.frame.map(|f| f as u64));
    }
    let mean = want.iter().map(|f| f64::from(f.p_fake)).sum::<f64>() / want.len() as f64;
    assert!((res["p_fake"].as_f64().unwrap() - mean).abs() <= 1e-6);
    // A short video is answered synchronously too.
    let sync = request(
        a,
        "POST",
        "/v1/detect?frames=4",
        &[("Content-Type", "video/mp4")],
        &bytes,
    )
    .json();
    assert!(
        (sync["p_fake"].as_f64().unwrap() - mean).abs() <= 1e-6,
        "{sync}"
    );
    assert_eq!(
        request(a, "DELETE", &format!("/v1/jobs/{id}"), &[], b"").status,
        204
    );
    let gone = request(a, "GET", &format!("/v1/jobs/{id}"), &[], b"");
    assert_eq!((gone.status, gone.code().as_str()), (404, "not_found"));
    // A job of bytes that are no media is refused at once, not failed later.
    let bad = request(
        a,
        "POST",
        "/v1/jobs",
        &[("Content-Type", "video/mp4")],
        b"definitely not a video",
    );
    assert_eq!((bad.status, bad.code().as_str()), (400, "unreadable_media"));
    // An image without a face: 422.
    let grey = png_bytes(&image::RgbImage::from_pixel(
        200,
        200,
        image::Rgb([90, 90, 90]),
    ));
    let nf = request(
        a,
        "POST",
        "/v1/detect",
        &[("Content-Type", "image/png")],
        &grey,
    );
    assert_eq!((nf.status, nf.code().as_str()), (422, "no_face_detected"));
    s.shutdown().unwrap();
}

#[test]
fn an_analysis_over_its_time_is_a_504_and_the_service_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    let s = start(
        &ck,
        ServeOptions {
            timeout: Duration::from_millis(1),
            ..Default::default()
        },
        false,
    );
    // A 2000×2000 PNG: decoding and resizing it alone take well over the 1 ms allowed.
    let png = png_bytes(&image::RgbImage::from_fn(2000, 2000, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    }));
    let r = request(
        s.addr,
        "POST",
        "/v1/detect?crops=true",
        &[("Content-Type", "image/png")],
        &png,
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (504, "timeout"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(request(s.addr, "GET", "/healthz", &[], b"").status, 200);
    let met = String::from_utf8(request(s.addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(
        met.contains("fsvfm_requests_total{route=\"/v1/detect\",status=\"504\"} 1"),
        "{met}"
    );
    s.shutdown().unwrap();
}

#[test]
fn a_video_whose_frames_hold_too_many_pixels_is_refused_before_decoding() {
    if !face_models() || !ffmpeg() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    // 256×256 frames (65536 pixels, under --max-pixels); 25 of them exceed 4 × --max-pixels.
    let s = start(
        &ck,
        ServeOptions {
            max_pixels: 100_000,
            ..Default::default()
        },
        true,
    );
    let clip = std::fs::read(video(d.path())).unwrap();
    let mp4 = ("Content-Type", "video/mp4");
    let r = request(s.addr, "POST", "/v1/detect?frames=32", &[mp4], &clip);
    assert_eq!(
        (r.status, r.code().as_str()),
        (413, "payload_too_large"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fewer frames")
    );
    let ok = request(s.addr, "POST", "/v1/detect?frames=4", &[mp4], &clip);
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["frames"].as_array().unwrap().len(), 4);
    s.shutdown().unwrap();
}
