//! Reading an upload: the body (bounded in size and time), its kind from its first bytes, and
//! images decoded only after their header's pixel count is checked.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use bytes::Bytes;
use fsvfm::data::input::{self, ImageError};
use image::{ImageFormat, RgbImage};

use crate::error::ApiError;

/// An uploaded file: its bytes and the content type it came with.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The file's bytes.
    pub bytes: Bytes,
    /// The declared type (the request's, or the multipart field's).
    pub content_type: String,
}

/// What the first bytes say a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An image in a format we decode.
    Image(ImageFormat),
    /// A video container, with the extension FFmpeg is given.
    Video(&'static str),
}

fn accepted(ct: &str) -> bool {
    ct.starts_with("image/")
        || ct.starts_with("video/")
        || ct == "application/octet-stream"
        || ct.starts_with("multipart/form-data")
}

/// Reads the request body: at most `max_bytes` (413 above), within `timeout` (408 for a client
/// that stops sending). `multipart/form-data` gives its `file` field.
pub async fn read_upload(
    req: Request,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Upload, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .trim()
        .to_ascii_lowercase();
    if !accepted(&ct) {
        return Err(ApiError::unsupported(format!(
            "content type `{ct}`: send the file's bytes as image/*, video/* or application/octet-stream, or as the `file` field of multipart/form-data"
        )));
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, max_bytes)).await {
        Err(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body did not arrive within {} s", timeout.as_secs_f64()),
            ));
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return Err(if too_large {
                ApiError::too_large(format!(
                    "the body is over the {} MB limit (--max-body-mb)",
                    max_bytes / (1 << 20)
                ))
            } else {
                ApiError::unreadable(format!("reading the body: {e}"))
            });
        }
        Ok(Ok(b)) => b,
    };
    if !ct.starts_with("multipart/form-data") {
        if bytes.is_empty() {
            return Err(ApiError::unreadable("empty body: send an image or a video"));
        }
        return Ok(Upload {
            bytes,
            content_type: ct,
        });
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let ct = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_ascii_lowercase();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::bad_request(format!("multipart field `file`: {e}")))?;
        if bytes.is_empty() {
            return Err(ApiError::unreadable("the `file` field is empty"));
        }
        if !accepted(&ct) || ct.starts_with("multipart/") {
            return Err(ApiError::unsupported(format!(
                "the `file` field's content type `{ct}`: send an image or a video"
            )));
        }
        return Ok(Upload {
            bytes,
            content_type: ct,
        });
    }
    Err(ApiError::bad_request(
        "multipart body without a `file` field",
    ))
}

/// The kind of a file from its first bytes (never from its declared type, which clients get
/// wrong): an image format we decode, a video container, or a clear error.
pub fn sniff(bytes: &[u8]) -> Result<Kind, ApiError> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Ok(Kind::Video("mp4"));
    }
    if bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return Ok(Kind::Video("mkv"));
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"AVI " {
        return Ok(Kind::Video("avi"));
    }
    if bytes.starts_with(&[0, 0, 1, 0xba]) {
        return Ok(Kind::Video("mpg"));
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(Kind::Image(f)),
        Ok(f) => Err(ApiError::unsupported(format!(
            "{f:?} images are not taken: send JPEG, PNG or WebP"
        ))),
        Err(_) => Err(ApiError::unreadable(
            "not an image or video we recognise (JPEG, PNG, WebP; MP4/MOV, MKV/WebM, AVI, MPEG)",
        )),
    }
}

/// The API error of an image the shared reader ([`fsvfm::data::input`]) refused: too many pixels
/// is 413, anything else unreadable media.
impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> ApiError {
        match e {
            ImageError::TooManyPixels { .. } => ApiError::too_large(format!("{e} (--max-pixels)")),
            ImageError::Format(Some(_)) => ApiError::unsupported(e.to_string()),
            e => ApiError::unreadable(e.to_string()),
        }
    }
}

/// An image's size from its header alone, refused when it declares more than `max_pixels`
/// (a decompression bomb never gets decoded), or when a JPEG is cut short.
pub fn image_dimensions(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<(u32, u32), ApiError> {
    Ok(input::image_dimensions(bytes, format, max_pixels)?)
}

/// Decodes an image once [`image_dimensions`] accepts its header, bounding the decoder's
/// allocations.
pub fn decode_image(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, ApiError> {
    image_dimensions(bytes, format, max_pixels)?;
    decode_checked(bytes, format, max_pixels)
}

/// [`decode_image`] for bytes whose header [`image_dimensions`] has accepted already.
pub(crate) fn decode_checked(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, ApiError> {
    Ok(input::decode_checked(bytes, format, max_pixels)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(w, h)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    /// CRC-32 (IEEE), as PNG chunks carry it.
    fn crc32(b: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in b {
            c ^= u32::from(x);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn kinds_come_from_the_bytes() {
        assert_eq!(sniff(&png(2, 2)).unwrap(), Kind::Image(ImageFormat::Png));
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend(b"ftypisom\0\0\0\0");
        assert_eq!(sniff(&mp4).unwrap(), Kind::Video("mp4"));
        assert_eq!(
            sniff(b"hello world, not media").unwrap_err().code,
            "unreadable_media"
        );
        assert_eq!(
            sniff(b"GIF89a\x01\x00\x01\x00").unwrap_err().code,
            "unsupported_media_type"
        );
    }

    #[test]
    fn a_cut_jpeg_is_unreadable() {
        let mut jpg = Vec::new();
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 0]))
            .write_to(&mut Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        assert!(input::jpeg_complete(&jpg));
        assert!(decode_image(&jpg, ImageFormat::Jpeg, 1 << 20).is_ok());
        for cut in [jpg.len() - 2, jpg.len() / 2] {
            assert!(!input::jpeg_complete(&jpg[..cut]));
            let e = decode_image(&jpg[..cut], ImageFormat::Jpeg, 1 << 20).unwrap_err();
            assert_eq!(e.code, "unreadable_media");
        }
    }

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        // A valid PNG header declaring 60000×60000, and no pixel data.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&60000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode_image(&bomb, ImageFormat::Png, 50_000_000).unwrap_err();
        assert_eq!(
            (e.code, e.status.as_u16()),
            ("payload_too_large", 413),
            "{e}"
        );
        assert!(e.message.contains("60000×60000"), "{e}");
        let ok = decode_image(&png(3, 2), ImageFormat::Png, 6).unwrap();
        assert_eq!(ok.dimensions(), (3, 2));
        let truncated = &png(64, 64)[..60];
        assert_eq!(
            decode_image(truncated, ImageFormat::Png, 1 << 20)
                .unwrap_err()
                .code,
            "unreadable_media"
        );
    }
}
