//! Reading inputs that may be hostile: one bounded reader for every file a command is given, image
//! headers checked before any pixel is decoded, and folder walks that visit each real file once.
//!
//! - Only regular files are read: a FIFO, a device (`/dev/zero` behind a `.jpg` link) or a socket
//!   is refused by its type, after opening it without blocking (a FIFO never hangs the run).
//! - Each [`Kind`] of file has a size cap, overridable by an environment variable
//!   (`FSVFM_MAX_IMAGE_MB`, …); a file over it is refused before it is read, and a file that grows
//!   while read is cut at the cap and refused.
//! - Images: the format from the first bytes, the size from the header (refused above
//!   `FSVFM_MAX_PIXELS`, so a decompression bomb is never decoded), JPEGs without an end-of-image
//!   marker after their last scan refused as truncated (the decoder would fill the missing rows
//!   with grey and report success), and the decoder's allocations bounded.
//! - [`walk_files`] follows links but visits every real file and folder once, by device and inode,
//!   so link cycles end and a file linked twice is read once.

use std::collections::HashSet;
use std::io::{Cursor, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// What a file is read as; each kind has its own size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A PNG, JPEG or WebP image (cap `FSVFM_MAX_IMAGE_MB`, default 256 MiB).
    Image,
    /// A video, read by FFmpeg (cap `FSVFM_MAX_VIDEO_MB`, default 64 GiB).
    Video,
    /// A `.npy` array or a safetensors file of tensors (cap `FSVFM_MAX_ARRAY_MB`, default 16 GiB).
    Array,
    /// A checkpoint (`.pth`, `.safetensors`; cap `FSVFM_MAX_CHECKPOINT_MB`, default 16 GiB).
    Checkpoint,
    /// A manifest, score CSV, recipe, sidecar or other text (cap `FSVFM_MAX_TEXT_MB`, default 1 GiB).
    Text,
}

impl Kind {
    /// The environment variable that overrides this kind's cap (in MiB).
    pub fn variable(self) -> &'static str {
        match self {
            Kind::Image => "FSVFM_MAX_IMAGE_MB",
            Kind::Video => "FSVFM_MAX_VIDEO_MB",
            Kind::Array => "FSVFM_MAX_ARRAY_MB",
            Kind::Checkpoint => "FSVFM_MAX_CHECKPOINT_MB",
            Kind::Text => "FSVFM_MAX_TEXT_MB",
        }
    }

    fn default_mib(self) -> u64 {
        match self {
            Kind::Image => 256,
            Kind::Video => 64 << 10,
            Kind::Array | Kind::Checkpoint => 16 << 10,
            Kind::Text => 1 << 10,
        }
    }

    /// The cap in bytes: the variable's value when it is a positive whole number of MiB, else the
    /// default.
    pub fn cap(self) -> u64 {
        let mib = std::env::var(self.variable())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(self.default_mib());
        mib.saturating_mul(1 << 20)
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Video => "video",
            Kind::Array => "array",
            Kind::Checkpoint => "checkpoint",
            Kind::Text => "text",
        }
    }
}

/// Why an input was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path is not a regular file (a folder, FIFO, device or socket).
    #[error("{}: {what}, not a regular file", show(path))]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The file is over its kind's size cap.
    #[error("{}: {} is over the {} MiB limit for {} files (set {var} to raise it)", show(path), bytes_text(*size), cap >> 20, kind.noun())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least; a growing file is cut at the cap).
        size: u64,
        /// The cap in bytes.
        cap: u64,
        /// The kind it was read as.
        kind: Kind,
        /// The variable that raises the cap.
        var: &'static str,
    },
    /// Opening or reading failed.
    #[error("{}: {source}", show(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not an image we can decode.
    #[error("{}: {source}", show(path))]
    Image {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ImageError,
    },
}

impl InputError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            InputError::NotRegular { path, .. }
            | InputError::TooLarge { path, .. }
            | InputError::Io { path, .. }
            | InputError::Image { path, .. } => path,
        }
    }

    /// The reason without the path (for skip records that hold the path in their own field).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", show(self.path()));
        full.strip_prefix(&prefix).unwrap_or(&full).to_string()
    }
}

impl From<InputError> for String {
    fn from(e: InputError) -> String {
        e.to_string()
    }
}

/// Why image bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The first bytes are not PNG, JPEG or WebP.
    #[error("not a PNG, JPEG or WebP image{}", .0.map(|f| format!(" ({f:?})")).unwrap_or_default())]
    Format(Option<ImageFormat>),
    /// The header could not be read.
    #[error("unreadable {0:?} header: {1}")]
    Header(ImageFormat, String),
    /// The header declares more pixels than allowed.
    #[error("the image declares {w}×{h} = {pixels} pixels, over the limit of {max} ({var})", var = PIXELS_VARIABLE)]
    TooManyPixels {
        /// Declared width.
        w: u32,
        /// Declared height.
        h: u32,
        /// `w · h`.
        pixels: u64,
        /// The limit.
        max: u64,
    },
    /// A JPEG cut short: no end-of-image marker after its last scan.
    #[error("truncated JPEG: no end-of-image marker after its last scan")]
    Truncated,
    /// The decoder failed.
    #[error("unreadable {0:?} image: {1}")]
    Decode(ImageFormat, String),
}

/// The variable that overrides [`max_pixels`].
pub const PIXELS_VARIABLE: &str = "FSVFM_MAX_PIXELS";

/// The most pixels an image header may declare: `FSVFM_MAX_PIXELS`, default 100 million
/// (a 10000 × 10000 photo).
pub fn max_pixels() -> u64 {
    std::env::var(PIXELS_VARIABLE)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v > 0)
        .unwrap_or(100_000_000)
}

/// A path for messages: as it is when it is UTF-8, else with each undecodable byte as `\xNN`
/// (never the replacement character, which would name a different file).
pub fn show(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn bytes_text(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

fn file_type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Opens `path` for reading as a `kind` file: without blocking (a FIFO with no writer), refused
/// unless it is a regular file within the cap. Returns the file and its size.
pub fn open_bounded(path: &Path, kind: Kind) -> Result<(std::fs::File, u64), InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular {
            path: path.to_path_buf(),
            what: file_type_name(meta.file_type()),
        });
    }
    let cap = kind.cap();
    if meta.len() > cap {
        return Err(too_large(path, meta.len(), kind));
    }
    Ok((file, meta.len()))
}

fn too_large(path: &Path, size: u64, kind: Kind) -> InputError {
    InputError::TooLarge {
        path: path.to_path_buf(),
        size,
        cap: kind.cap(),
        kind,
        var: kind.variable(),
    }
}

/// Checks that `path` is a regular file within `kind`'s cap without reading it (a video handed to
/// FFmpeg). Returns its size.
pub fn check_file(path: &Path, kind: Kind) -> Result<u64, InputError> {
    open_bounded(path, kind).map(|(_, n)| n)
}

/// Reads a whole `kind` file: regular files only, at most the kind's cap (a file that grows past
/// it while read is refused, not read on).
pub fn read_bounded(path: &Path, kind: Kind) -> Result<Vec<u8>, InputError> {
    let (file, len) = open_bounded(path, kind)?;
    let cap = kind.cap();
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| InputError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot allocate {}", bytes_text(len)),
            ),
        })?;
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| InputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(path, bytes.len() as u64, kind));
    }
    Ok(bytes)
}

impl From<InputError> for std::io::Error {
    /// The OS error as it was, or the refusal as `InvalidInput` / `FileTooLarge` with the reason
    /// (callers name the path).
    fn from(e: InputError) -> std::io::Error {
        match e {
            InputError::Io { source, .. } => source,
            e @ InputError::TooLarge { .. } => {
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, e.reason())
            }
            e => std::io::Error::new(std::io::ErrorKind::InvalidInput, e.reason()),
        }
    }
}

/// [`read_bounded`] with the `std::fs::read` signature: a drop-in where callers already name the
/// path in their errors.
pub fn read(path: impl AsRef<Path>, kind: Kind) -> std::io::Result<Vec<u8>> {
    read_bounded(path.as_ref(), kind).map_err(Into::into)
}

/// [`read_text`] with the `std::fs::read_to_string` signature (cap [`Kind::Text`]).
pub fn read_to_string(path: impl AsRef<Path>) -> std::io::Result<String> {
    read_text(path.as_ref()).map_err(Into::into)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String, InputError> {
    let bytes = read_bounded(path, Kind::Text)?;
    String::from_utf8(bytes).map_err(|e| InputError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ),
    })
}

/// The format of image bytes from their first bytes: PNG, JPEG or WebP, else an error.
pub fn image_format(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(f) => Err(ImageError::Format(Some(f))),
        Err(_) => Err(ImageError::Format(None)),
    }
}

/// An image's size from its header alone, refused when it declares more than `max_pixels`, or
/// when a JPEG is cut short.
pub fn image_dimensions(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<(u32, u32), ImageError> {
    if format == ImageFormat::Jpeg && !jpeg_complete(bytes) {
        return Err(ImageError::Truncated);
    }
    let mut r = ImageReader::new(Cursor::new(bytes));
    r.set_format(format);
    let (w, h) = r
        .into_dimensions()
        .map_err(|e| ImageError::Header(format, e.to_string()))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(ImageError::TooManyPixels {
            w,
            h,
            pixels,
            max: max_pixels,
        });
    }
    Ok((w, h))
}

/// Decodes image bytes whose header [`image_dimensions`] has accepted, bounding the decoder's
/// allocations.
pub fn decode_checked(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<RgbImage, ImageError> {
    let mut r = ImageReader::new(Cursor::new(bytes));
    r.set_format(format);
    let mut limits = Limits::default();
    // RGBA at 8 bits plus the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(64 << 20));
    r.limits(limits);
    let img = r
        .decode()
        .map_err(|e| ImageError::Decode(format, e.to_string()))?;
    Ok(img.to_rgb8())
}

/// Decodes PNG, JPEG or WebP bytes to 8-bit RGB: format sniffed, header checked against
/// `max_pixels`, truncated JPEGs refused.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let format = image_format(bytes)?;
    image_dimensions(bytes, format, max_pixels)?;
    decode_checked(bytes, format, max_pixels)
}

/// Reads and decodes an image file through [`read_bounded`] and [`decode_image`] (pixel limit
/// [`max_pixels`]).
pub fn read_image(path: &Path) -> Result<RgbImage, InputError> {
    let bytes = read_bounded(path, Kind::Image)?;
    decode_image(&bytes, max_pixels()).map_err(|source| InputError::Image {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether a JPEG's last scan is followed by its end-of-image marker. Inside entropy-coded data
/// `FF` is stuffed as `FF 00`, so an `FF D9` after the last start-of-scan (`FF DA`) is the real
/// end (an EXIF thumbnail's markers all come before the main image's scans).
pub fn jpeg_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xff, 0xda]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xff, 0xd9]),
        None => false,
    }
}

/// The files under `root` that `keep` accepts, sorted by path, each real file once: links are
/// followed, but a folder or file already visited (same device and inode) is not visited again,
/// so `a -> .` cycles end and two links to one file give it once. Broken links and entries that
/// cannot be read are left out; an unreadable `root` is an error.
pub fn walk_files(root: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let meta = std::fs::metadata(root).map_err(|e| format!("{}: {e}", show(root)))?;
    if !meta.is_dir() {
        return Err(format!("{}: not a folder", show(root)));
    }
    seen.insert((meta.dev(), meta.ino()));
    walk_into(root, &keep, &mut seen, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk_into(
    dir: &Path,
    keep: &dyn Fn(&Path) -> bool,
    seen: &mut HashSet<(u64, u64)>,
    out: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", show(dir)))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    // Real entries before links, so a file reached both ways is named by its own path.
    let is_link = |p: &PathBuf| {
        p.symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    };
    let (links, real): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(is_link);
    for p in real.into_iter().chain(links) {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        if meta.is_dir() {
            // A folder that cannot be listed (permissions) is left out like a broken link.
            let _ = walk_into(&p, keep, seen, out);
        } else if keep(&p) {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 0]))
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .unwrap();
        out
    }

    #[test]
    fn special_files_are_refused_by_type_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe.jpg");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, Kind::Image).unwrap_err();
        assert!(e.to_string().contains("a FIFO, not a regular file"), "{e}");
        let zero = d.path().join("zero.jpg");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_image(&zero).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(matches!(
            read_bounded(d.path(), Kind::Text),
            Err(InputError::NotRegular { .. })
        ));
    }

    #[test]
    fn files_over_the_cap_are_refused_before_reading() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big.jpg");
        // Sparse: 3 GiB of size, no blocks, nothing read.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        let e = read_image(&big).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("3.0 GiB is over the 256 MiB limit for image files")
                && text.contains("FSVFM_MAX_IMAGE_MB"),
            "{text}"
        );
        assert!(matches!(e, InputError::TooLarge { size, .. } if size == 3 << 30));
    }

    #[test]
    fn truncated_and_lying_images_are_refused() {
        let jpg = jpeg(64, 48);
        assert_eq!(decode_image(&jpg, 1 << 20).unwrap().dimensions(), (64, 48));
        for cut in [jpg.len() - 2, jpg.len() / 2] {
            assert!(matches!(
                decode_image(&jpg[..cut], 1 << 20),
                Err(ImageError::Truncated)
            ));
        }
        assert!(matches!(
            decode_image(&jpg, 64 * 48 - 1),
            Err(ImageError::TooManyPixels { w: 64, h: 48, .. })
        ));
        assert!(matches!(
            decode_image(b"GIF89a\x01\x00\x01\x00", 1 << 20),
            Err(ImageError::Format(Some(ImageFormat::Gif)))
        ));
        assert!(matches!(
            decode_image(b"plain text", 1 << 20),
            Err(ImageError::Format(None))
        ));
        let mut png = Vec::new();
        RgbImage::new(64, 64)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        assert!(decode_image(&png[..png.len() - 20], 1 << 20).is_err());
    }

    #[test]
    fn walks_visit_each_real_file_once() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("d");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("face.jpg"), b"x").unwrap();
        std::fs::write(root.join("sub/two.png"), b"x").unwrap();
        std::os::unix::fs::symlink(".", root.join("a")).unwrap();
        std::os::unix::fs::symlink(".", root.join("b")).unwrap();
        std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
        std::os::unix::fs::symlink("face.jpg", root.join("again.jpg")).unwrap();
        std::os::unix::fs::symlink("missing.jpg", root.join("broken.jpg")).unwrap();
        let files = walk_files(&root, |_| true).unwrap();
        // The file itself is kept, not the link to it.
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["face.jpg", "sub/two.png"]);
        assert!(walk_files(&root.join("face.jpg"), |_| true).is_err());
    }

    #[test]
    fn paths_show_undecodable_bytes_as_escapes() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/in/caf\xe9.jpg"));
        assert_eq!(show(p), "/in/caf\\xe9.jpg");
        assert_eq!(show(Path::new("/in/café.jpg")), "/in/café.jpg");
    }
}
