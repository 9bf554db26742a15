//! Video frames through FFmpeg (spec §4: FSFM and DeepfakeBench take `K` frames at
//! `np.linspace(0, n − 1, K, dtype=int)`).
//!
//! Decoding runs the `ffprobe`/`ffmpeg` programs of Debian's `ffmpeg` package (installed by
//! `tools/face/setup.sh`) as subprocesses rather than linking libavcodec through bindings: same
//! decoders, no bindgen/clang in the build, and a crash in a broken file cannot take the batch
//! down. Frames come back as PPM through a pipe, so rotation metadata and odd sizes need no
//! special handling.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use image::RgbImage;

use crate::FaceError;

/// File extensions treated as videos.
pub const VIDEO_EXTENSIONS: [&str; 7] = ["mp4", "avi", "mov", "mkv", "webm", "m4v", "mpg"];

/// Whether `path` has a video extension.
pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Which frames to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSelection {
    /// `K` frames at `linspace(0, n − 1, K)` truncated to integers (all frames when `n ≤ K`).
    Uniform(usize),
    /// Every `n`-th frame, starting with frame 0.
    Every(usize),
}

/// The frame indices `selection` takes from a video of `n` frames, ascending, distinct.
pub fn frame_indices(n: usize, selection: FrameSelection) -> Vec<usize> {
    match selection {
        FrameSelection::Uniform(k) => {
            if n == 0 || k == 0 {
                return Vec::new();
            }
            if k == 1 {
                return vec![0];
            }
            if k >= n {
                // linspace's steps are at most 1 frame: every frame (and no `k`-long list for a
                // huge `--frames`).
                return (0..n).collect();
            }
            let mut v: Vec<usize> = (0..k)
                // np.linspace(0, n - 1, k) then astype(int): truncation toward zero.
                .map(|i| ((n - 1) as f64 * i as f64 / (k - 1) as f64) as usize)
                .collect();
            v.dedup();
            v
        }
        FrameSelection::Every(step) => (0..n).step_by(step.max(1)).collect(),
    }
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.stdin(Stdio::null());
    c
}

fn missing_tool(name: &str, e: std::io::Error) -> FaceError {
    FaceError::MissingAsset(format!(
        "cannot run `{name}` ({e}): video input needs FFmpeg; install Debian's `ffmpeg` package \
         (`bash tools/face/setup.sh` does)"
    ))
}

/// Number of decodable frames in the first video stream (ffprobe counts packets, which for the
/// usual codecs equals frames, without decoding).
pub fn frame_count(path: &Path) -> Result<usize, FaceError> {
    // FFmpeg would block on a FIFO or read a device forever.
    fsvfm_data::input::check_file(path, fsvfm_data::input::Kind::Video)
        .map_err(|e| FaceError::Input(e.to_string()))?;
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| missing_tool("ffprobe", e))?;
    match (out.status.success(), parse_packet_count(&out.stdout)) {
        (true, Some(n)) => Ok(n),
        _ => Err(FaceError::Input(format!(
            "{}: unreadable video ({})",
            path.display(),
            first_line(&String::from_utf8_lossy(&out.stderr)).unwrap_or("no video stream")
        ))),
    }
}

/// What a video's header says of its first video stream, read without decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Average frame rate (frames per second; 0 when the file does not say).
    pub fps: f64,
    /// Duration in seconds (the stream's, else the container's; 0 when neither says).
    pub duration_s: f64,
}

/// Reads [`VideoInfo`] with `ffprobe` (container and stream headers only), so a service can
/// refuse a video too long or too large before decoding any frame.
pub fn probe(path: &Path) -> Result<VideoInfo, FaceError> {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,avg_frame_rate,duration:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .map_err(|e| missing_tool("ffprobe", e))?;
    let unreadable = |why: &str| {
        FaceError::Input(format!(
            "{}: unreadable video ({})",
            path.display(),
            first_line(&String::from_utf8_lossy(&out.stderr)).unwrap_or(why)
        ))
    };
    if !out.status.success() {
        return Err(unreadable("ffprobe failed"));
    }
    parse_probe(&out.stdout).map_err(unreadable)
}

/// `ffprobe -count_packets … -of csv=p=0` output (`"123"` or `"123,"`): the packet count when it
/// is a positive integer.
pub fn parse_packet_count(stdout: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(stdout).ok()?;
    text.trim()
        .trim_end_matches(',')
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
}

/// [`VideoInfo`] from `ffprobe -show_entries stream=width,height,avg_frame_rate,duration:
/// format=duration -of json` output; the error says what the output lacks. Any bytes are
/// accepted as input (an FFmpeg build may print anything), so this is fuzzed (`fsvfm-fuzz`).
pub fn parse_probe(stdout: &[u8]) -> Result<VideoInfo, &'static str> {
    let v: serde_json::Value = serde_json::from_slice(stdout).map_err(|_| "ffprobe output")?;
    let stream = v["streams"].get(0).ok_or("no video stream")?;
    let num = |x: &serde_json::Value| x.as_str().and_then(|s| s.parse::<f64>().ok());
    let fps = stream["avg_frame_rate"]
        .as_str()
        .and_then(|r| {
            let (a, b) = r.split_once('/')?;
            let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
            (b > 0.0).then_some(a / b)
        })
        .filter(|f| f.is_finite() && *f >= 0.0)
        .unwrap_or(0.0);
    let duration_s = num(&stream["duration"])
        .or_else(|| num(&v["format"]["duration"]))
        .filter(|d| d.is_finite() && *d >= 0.0)
        .unwrap_or(0.0);
    let dim = |k: &str| stream[k].as_u64().and_then(|x| u32::try_from(x).ok());
    match (dim("width"), dim("height")) {
        (Some(width), Some(height)) if width > 0 && height > 0 => Ok(VideoInfo {
            width,
            height,
            fps,
            duration_s,
        }),
        _ => Err("no frame size"),
    }
}

fn first_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Decodes the frames at `indices` (ascending) of `path`: `(index, frame)` pairs. Frames the
/// decoder could not produce (a truncated file) are missing from the result; the caller records
/// them.
pub fn read_frames(path: &Path, indices: &[usize]) -> Result<Vec<(usize, RgbImage)>, FaceError> {
    if indices.is_empty() {
        return Ok(Vec::new());
    }
    let select: Vec<String> = indices.iter().map(|i| format!("eq(n\\,{i})")).collect();
    let mut child = tool("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-vf"])
        .arg(format!("select='{}'", select.join("+")))
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "image2pipe",
            "-c:v",
            "ppm",
            "-",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool("ffmpeg", e))?;
    let mut bytes = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut bytes)
        .map_err(|e| FaceError::io(path, e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| FaceError::io(path, e))?;
    let mut frames = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() && frames.len() < indices.len() {
        let (img, used) = parse_ppm(rest).ok_or_else(|| {
            FaceError::Input(format!(
                "{}: ffmpeg returned a malformed frame",
                path.display()
            ))
        })?;
        frames.push((indices[frames.len()], img));
        rest = &rest[used..];
    }
    if frames.is_empty() && !out.status.success() {
        return Err(FaceError::Input(format!(
            "{}: unreadable video ({})",
            path.display(),
            first_line(&String::from_utf8_lossy(&out.stderr)).unwrap_or("ffmpeg failed")
        )));
    }
    Ok(frames)
}

/// Parses one binary PPM (`P6`, maxval 255) from the front of `b`: the image and the bytes used.
fn parse_ppm(b: &[u8]) -> Option<(RgbImage, usize)> {
    let mut pos = 0;
    let mut fields = Vec::with_capacity(4);
    while fields.len() < 4 {
        while pos < b.len() && b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if b.get(pos) == Some(&b'#') {
            while pos < b.len() && b[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while pos < b.len() && !b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            return None;
        }
        fields.push(std::str::from_utf8(&b[start..pos]).ok()?);
    }
    pos += 1; // the single whitespace byte after maxval
    if fields[0] != "P6" || fields[3] != "255" {
        return None;
    }
    let (w, h): (u32, u32) = (fields[1].parse().ok()?, fields[2].parse().ok()?);
    let len = (w as usize) * (h as usize) * 3;
    let data = b.get(pos..pos + len)?.to_vec();
    Some((RgbImage::from_raw(w, h, data)?, pos + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ffprobe -v error -select_streams v:0 -show_entries
    /// stream=width,height,avg_frame_rate,duration:format=duration -of json` on a 25 fps clip
    /// (also a seed of `fsvfm-fuzz`).
    const PROBE_JSON: &str = include_str!("../tests/fixtures/ffprobe_stream.json");

    #[test]
    fn probe_output_is_parsed_and_lies_are_refused() {
        let info = parse_probe(PROBE_JSON.as_bytes()).unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!((info.fps, info.duration_s), (25.0, 2.0));
        // No stream duration: the container's.
        let no_stream_dur = PROBE_JSON.replace(r#""duration": "2.000000""#, r#""x": "0""#);
        assert_eq!(
            parse_probe(no_stream_dur.as_bytes()).unwrap().duration_s,
            2.04
        );
        // A zero denominator, a negative rate, a NaN duration: 0 ("not said"), not inf or NaN.
        for (from, to) in [("25/1", "25/0"), ("25/1", "-25/1")] {
            assert_eq!(
                parse_probe(PROBE_JSON.replace(from, to).as_bytes())
                    .unwrap()
                    .fps,
                0.0
            );
        }
        let nan = PROBE_JSON
            .replace("2.000000", "nan")
            .replace("2.040000", "nan");
        assert_eq!(parse_probe(nan.as_bytes()).unwrap().duration_s, 0.0);
        for (from, to, why) in [
            ("320", "0", "no frame size"),
            ("240", "4294967296", "no frame size"),
            (
                "\"streams\": [",
                "\"streams\": [], \"s\": [",
                "no video stream",
            ),
            ("{", "[", "ffprobe output"),
        ] {
            assert_eq!(
                parse_probe(PROBE_JSON.replacen(from, to, 1).as_bytes()),
                Err(why),
                "{to}"
            );
        }
        assert_eq!(parse_packet_count(b"50,\n"), Some(50));
        assert_eq!(parse_packet_count(b"0\n"), None);
        assert_eq!(parse_packet_count(b"N/A"), None);
        assert_eq!(parse_packet_count(b"\xff5"), None);
    }

    #[test]
    fn uniform_indices_follow_numpy_linspace_astype_int() {
        // np.linspace(0, 99, 4).astype(int) == [0, 33, 66, 99]
        assert_eq!(
            frame_indices(100, FrameSelection::Uniform(4)),
            vec![0, 33, 66, 99]
        );
        // np.linspace(0, 9, 4).astype(int) == [0, 3, 6, 9]
        assert_eq!(
            frame_indices(10, FrameSelection::Uniform(4)),
            vec![0, 3, 6, 9]
        );
        // More frames asked than exist: every frame once.
        assert_eq!(frame_indices(3, FrameSelection::Uniform(8)), vec![0, 1, 2]);
        // A huge count on a short clip is the clip's frames, not a 10^10-long list.
        assert_eq!(
            frame_indices(20, FrameSelection::Uniform(10_000_000_000)),
            (0..20).collect::<Vec<_>>()
        );
        // At k = n − 1 and n linspace still covers every frame the old way did.
        for n in [2, 5, 33] {
            for k in [n - 1, n] {
                let old: Vec<usize> = {
                    let mut v: Vec<usize> = (0..k)
                        .map(|i| ((n - 1) as f64 * i as f64 / (k - 1).max(1) as f64) as usize)
                        .collect();
                    v.dedup();
                    v
                };
                assert_eq!(frame_indices(n, FrameSelection::Uniform(k)), old, "{n} {k}");
            }
        }
        assert!(frame_indices(0, FrameSelection::Uniform(8)).is_empty());
        assert_eq!(frame_indices(10, FrameSelection::Every(4)), vec![0, 4, 8]);
    }

    #[test]
    fn ppm_frames_parse_back_to_back() {
        let mut b = b"P6\n2 1\n255\n".to_vec();
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        b.extend_from_slice(b"P6 1 1 255\n");
        b.extend_from_slice(&[9, 9, 9]);
        let (a, used) = parse_ppm(&b).unwrap();
        assert_eq!(
            (a.width(), a.height(), a.get_pixel(1, 0).0),
            (2, 1, [4, 5, 6])
        );
        let (c, _) = parse_ppm(&b[used..]).unwrap();
        assert_eq!(c.get_pixel(0, 0).0, [9, 9, 9]);
        assert!(parse_ppm(b"P6\n2 1\n255\n\x01").is_none());
    }
}
