//! Work-around for `.pth` archives that burn's pickle reader (zip 9.8) rejects with
//! "Invalid Central Directory header" although they are valid (Python's `zipfile` and `torch.load`
//! read them; it depends on the archive's inner name length, so any checkpoint name can hit it).
//! We read the archive's central directory ourselves (torch writes every entry uncompressed) and
//! re-write the entries with the `zip` crate into a temp file the reader accepts.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

// Every field is read through these: an offset from a hostile header past the buffer is an
// error, not a panic (found by `fsvfm-fuzz`, target `pth`).
fn bytes_at<const K: usize>(b: &[u8], i: usize) -> std::io::Result<[u8; K]> {
    i.checked_add(K)
        .and_then(|end| b.get(i..end))
        .map(|s| s.try_into().expect("K bytes"))
        .ok_or_else(|| invalid("zip record cut short"))
}
fn u16_at(b: &[u8], i: usize) -> std::io::Result<u16> {
    bytes_at(b, i).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], i: usize) -> std::io::Result<u32> {
    bytes_at(b, i).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], i: usize) -> std::io::Result<u64> {
    bytes_at(b, i).map(u64::from_le_bytes)
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// One stored entry: its name, where its data starts and how long it is.
struct Entry {
    name: String,
    data_start: u64,
    size: u64,
}

/// A central directory entry's fixed part.
const CD_ENTRY: usize = 46;

/// Lists the entries of a zip whose entries are all stored (uncompressed). Every offset and size
/// the archive states is checked against the file's length before it is used or allocated.
fn entries(f: &mut File) -> std::io::Result<Vec<Entry>> {
    let len = f.seek(SeekFrom::End(0))?;
    // The end record (22 bytes + comment ≤ 64 KiB) and the zip64 locator/record sit in the tail.
    let tail_len = len.min(22 + 65_535 + 20 + 56);
    let mut tail = vec![0u8; tail_len as usize];
    f.seek(SeekFrom::Start(len - tail_len))?;
    f.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == *b"PK\x05\x06")
        .ok_or_else(|| invalid("no zip end-of-central-directory record"))?;
    let mut count = u64::from(u16_at(&tail, eocd + 10)?);
    let mut cd_size = u64::from(u32_at(&tail, eocd + 12)?);
    let mut cd_off = u64::from(u32_at(&tail, eocd + 16)?);
    if eocd >= 20 && tail[eocd - 20..eocd - 16] == *b"PK\x06\x07" {
        let rec = u64_at(&tail, eocd - 20 + 8)?;
        if rec.checked_add(56).is_none_or(|end| end > len) {
            return Err(invalid("zip64 end record outside the file"));
        }
        let mut z = [0u8; 56];
        f.seek(SeekFrom::Start(rec))?;
        f.read_exact(&mut z)?;
        if z[..4] != *b"PK\x06\x06" {
            return Err(invalid("bad zip64 end record"));
        }
        count = u64_at(&z, 32)?;
        cd_size = u64_at(&z, 40)?;
        cd_off = u64_at(&z, 48)?;
    }
    if cd_off.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(invalid("central directory outside the file"));
    }
    if count > cd_size / CD_ENTRY as u64 {
        return Err(invalid(format!(
            "{count} entries cannot fit a {cd_size}-byte central directory"
        )));
    }
    let mut cd = vec![0u8; cd_size as usize];
    f.seek(SeekFrom::Start(cd_off))?;
    f.read_exact(&mut cd)?;
    let mut out = Vec::with_capacity(count as usize);
    let mut p = 0usize;
    for _ in 0..count {
        if cd.get(p..p + 4) != Some(b"PK\x01\x02".as_slice()) {
            return Err(invalid("bad central directory entry"));
        }
        if u16_at(&cd, p + 10)? != 0 {
            return Err(invalid(
                "compressed entry (torch archives store entries uncompressed)",
            ));
        }
        let (n, e, c) = (
            usize::from(u16_at(&cd, p + 28)?),
            usize::from(u16_at(&cd, p + 30)?),
            usize::from(u16_at(&cd, p + 32)?),
        );
        let name = cd
            .get(p + CD_ENTRY..p + CD_ENTRY + n)
            .ok_or_else(|| invalid("entry name outside the central directory"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let mut size = u64::from(u32_at(&cd, p + 24)?);
        let mut local = u64::from(u32_at(&cd, p + 42)?);
        // zip64 extra field (id 1): the 0xFFFFFFFF fields follow in order (usize, csize, offset).
        let extra_end = p + CD_ENTRY + n + e;
        let mut x = p + CD_ENTRY + n;
        while x + 4 <= extra_end {
            let (id, sz) = (u16_at(&cd, x)?, usize::from(u16_at(&cd, x + 2)?));
            if id == 1 {
                let mut q = x + 4;
                if size == u64::from(u32::MAX) {
                    size = u64_at(&cd, q)?;
                    q += 8;
                }
                if u32_at(&cd, p + 20)? == u32::MAX {
                    q += 8;
                }
                if local == u64::from(u32::MAX) {
                    local = u64_at(&cd, q)?;
                }
            }
            x += 4 + sz;
        }
        if local.checked_add(30).is_none_or(|end| end > len) {
            return Err(invalid(format!("entry {name}: header outside the file")));
        }
        let mut lh = [0u8; 30];
        f.seek(SeekFrom::Start(local))?;
        f.read_exact(&mut lh)?;
        if lh[..4] != *b"PK\x03\x04" {
            return Err(invalid("bad local file header"));
        }
        let data_start = local + 30 + u64::from(u16_at(&lh, 26)?) + u64::from(u16_at(&lh, 28)?);
        if data_start.checked_add(size).is_none_or(|end| end > len) {
            return Err(invalid(format!("entry {name}: data outside the file")));
        }
        out.push(Entry {
            name,
            data_start,
            size,
        });
        p += CD_ENTRY + n + e + c;
    }
    Ok(out)
}

/// Copies the stored entries of the torch archive at `path` into a fresh zip in a temp file.
pub(crate) fn repack(path: &Path) -> std::io::Result<tempfile::TempPath> {
    let mut src = File::open(path)?;
    let list = entries(&mut src)?;
    let tmp = tempfile::Builder::new()
        .prefix("fsvfm-repack-")
        .suffix(".pth")
        .tempfile()?;
    let (file, tmp_path) = tmp.into_parts();
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(file));
    for e in list {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(e.size > u64::from(u32::MAX));
        zw.start_file(e.name.as_str(), opts)
            .map_err(|err| invalid(err.to_string()))?;
        src.seek(SeekFrom::Start(e.data_start))?;
        let copied = std::io::copy(&mut (&mut src).take(e.size), &mut zw)?;
        if copied != e.size {
            return Err(invalid(format!("entry {} is truncated", e.name)));
        }
    }
    zw.finish()
        .map_err(|err| invalid(err.to_string()))?
        .flush()?;
    Ok(tmp_path)
}
