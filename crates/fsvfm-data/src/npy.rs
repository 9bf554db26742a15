//! NumPy `.npy` files (format 1.0–3.0): one reader for every crate (float model inputs, integer
//! label maps) and an `<f4` writer.
//!
//! Reads little-, big- or native-endian floats (f2/f4/f8), signed/unsigned integers (1–8 bytes) and
//! bools, in C or Fortran order (Fortran arrays are reordered to C order). The official parsing maps
//! are `int8 [1, 224, 224]` (spec §4); `fsvfm forward` takes float32 `[N, 3, H, W]`.

use std::path::Path;

/// Errors reading or writing `.npy` files.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not an `.npy` array this reader supports.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
}

/// A dense C-order array converted to `f32`.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub data: Vec<f32>,
}

/// A dense C-order integer array (integer and bool dtypes only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major; `u64` values above `i64::MAX` saturate.
    pub values: Vec<i64>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element kind of the header's `descr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    UInt,
    Bool,
}

#[derive(Clone, Copy, Debug)]
struct Dtype {
    kind: Kind,
    size: usize,
    big_endian: bool,
}

/// What the header says, and where the data starts.
struct Header<'a> {
    dtype: Dtype,
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    data: &'a [u8],
}

fn parse_header(bytes: &[u8]) -> Result<Header<'_>, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err("truncated header length".into()),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated header")?;
    // Version 3 allows UTF-8; the keys we need are ASCII either way.
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not UTF-8".to_string())?;
    let (descr, dtype) = parse_descr(dict_value(header, "descr").ok_or("header has no 'descr'")?)?;
    let fortran = match dict_value(header, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err("header has no valid 'fortran_order'".into()),
    };
    let shape = parse_shape(dict_value(header, "shape").ok_or("header has no 'shape'")?)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let needed = count.checked_mul(dtype.size).ok_or("shape overflows")?;
    let data = &bytes[end..];
    if data.len() < needed {
        return Err(format!(
            "data is truncated: {} bytes, shape {shape:?} needs {needed}",
            data.len()
        ));
    }
    Ok(Header {
        dtype,
        descr,
        fortran,
        shape,
        data: &data[..needed],
    })
}

/// The raw text after `'key':` in the header dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let (single, double) = (format!("'{key}'"), format!("\"{key}\""));
    let pos = header
        .find(&single)
        .map(|p| p + single.len())
        .or_else(|| header.find(&double).map(|p| p + double.len()))?;
    header[pos..]
        .trim_start()
        .strip_prefix(':')
        .map(str::trim_start)
}

fn parse_descr(raw: &str) -> Result<(String, Dtype), String> {
    let quote = raw.chars().next().ok_or("empty 'descr'")?;
    if quote != '\'' && quote != '"' {
        return Err(format!("unsupported dtype descriptor {raw:.20}"));
    }
    let body = &raw[1..];
    let descr = &body[..body.find(quote).ok_or("unterminated 'descr'")?];
    let (order, rest) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let (kind, size) = rest.split_at(rest.len().min(1));
    let size: usize = size
        .parse()
        .map_err(|_| format!("unsupported dtype '{descr}'"))?;
    let kind = match (kind, size) {
        ("f", 2 | 4 | 8) => Kind::Float,
        ("i", 1 | 2 | 4 | 8) => Kind::Int,
        ("u", 1 | 2 | 4 | 8) => Kind::UInt,
        ("b", 1) => Kind::Bool,
        _ => return Err(format!("unsupported dtype '{descr}'")),
    };
    // '=' is native order; every platform we build for is little-endian.
    Ok((
        descr.to_string(),
        Dtype {
            kind,
            size,
            big_endian: order == '>',
        },
    ))
}

fn parse_shape(raw: &str) -> Result<Vec<usize>, String> {
    let inner = raw
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .map(|(inner, _)| inner)
        .ok_or("'shape' is not a tuple")?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect()
}

/// One element's bytes as a little-endian 8-byte word (low `size` bytes).
fn word(chunk: &[u8], dt: Dtype) -> u64 {
    let mut buf = [0u8; 8];
    if dt.big_endian {
        for (i, &b) in chunk.iter().rev().enumerate() {
            buf[i] = b;
        }
    } else {
        buf[..dt.size].copy_from_slice(chunk);
    }
    u64::from_le_bytes(buf)
}

fn as_i64(raw: u64, dt: Dtype) -> i64 {
    match dt.kind {
        Kind::Int if dt.size < 8 => {
            let shift = 64 - 8 * dt.size as u32;
            ((raw << shift) as i64) >> shift
        }
        Kind::UInt if dt.size == 8 && raw > i64::MAX as u64 => i64::MAX,
        _ => raw as i64,
    }
}

fn as_f32(raw: u64, dt: Dtype) -> f32 {
    match (dt.kind, dt.size) {
        (Kind::Float, 2) => f16_to_f32(raw as u16),
        (Kind::Float, 4) => f32::from_bits(raw as u32),
        (Kind::Float, 8) => f64::from_bits(raw) as f32,
        (Kind::UInt, 8) => raw as f32,
        _ => as_i64(raw, dt) as f32,
    }
}

/// IEEE half → single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// Reorders Fortran-order (column-major) values into C order.
fn fortran_to_c<T: Copy + Default>(values: &[T], shape: &[usize]) -> Vec<T> {
    let mut out = vec![T::default(); values.len()];
    let mut f_strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        f_strides[k] = f_strides[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    for slot in out.iter_mut() {
        *slot = values[idx
            .iter()
            .zip(&f_strides)
            .map(|(i, s)| i * s)
            .sum::<usize>()];
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

fn decode<T: Copy + Default>(h: &Header<'_>, f: impl Fn(u64, Dtype) -> T) -> Vec<T> {
    let values: Vec<T> = h
        .data
        .chunks_exact(h.dtype.size)
        .map(|c| f(word(c, h.dtype), h.dtype))
        .collect();
    if h.fortran && h.shape.len() > 1 {
        fortran_to_c(&values, &h.shape)
    } else {
        values
    }
}

/// Parses `.npy` bytes of any supported dtype into `f32`. Errors are plain text (the caller adds
/// the file name).
pub fn parse_f32(bytes: &[u8]) -> Result<Array, String> {
    let h = parse_header(bytes)?;
    Ok(Array {
        data: decode(&h, as_f32),
        shape: h.shape,
    })
}

/// Parses `.npy` bytes of an integer or bool dtype (label maps); floats are refused.
pub fn parse_int(bytes: &[u8]) -> Result<IntArray, String> {
    let h = parse_header(bytes)?;
    if h.dtype.kind == Kind::Float {
        return Err(format!(
            "dtype '{}' is not an integer type (label maps must be integers)",
            h.descr
        ));
    }
    Ok(IntArray {
        values: decode(&h, as_i64),
        shape: h.shape,
    })
}

/// Reads an `.npy` file of any supported dtype into `f32`.
pub fn read_f32(path: impl AsRef<Path>) -> Result<Array, NpyError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes =
        crate::input::read_bounded(path, crate::input::Kind::Array).map_err(|e| match e {
            crate::input::InputError::Io { source, .. } => NpyError::Io {
                path: name.clone(),
                source,
            },
            e => NpyError::Format {
                path: name.clone(),
                msg: e.reason(),
            },
        })?;
    parse_f32(&bytes).map_err(|msg| NpyError::Format { path: name, msg })
}

/// `.npy` bytes (version 1.0, C order, header padded to 64 bytes as numpy does) for `descr`
/// (e.g. `<f4`, `|u1`) with raw little-endian `data`.
pub fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    while !(MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes `data` with `shape` as a little-endian float32 `.npy`, atomically (temp file + rename).
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    if shape.iter().product::<usize>() != data.len() {
        return Err(NpyError::Format {
            path: name,
            msg: format!("{} values do not fill shape {shape:?}", data.len()),
        });
    }
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = encode("<f4", shape, &raw);
    crate::atomic::write_atomic(path, &out, false)
        .map_err(|source| NpyError::Io { path: name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&p, &[2, 3, 4], &data).unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!((a.shape, a.data), (vec![2, 3, 4], data));
        let bytes = std::fs::read(&p).unwrap();
        let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0, "header alignment");
    }

    #[test]
    fn integer_half_and_big_endian_dtypes_convert() {
        let a = parse_f32(&encode("|i1", &[1, 3], &[0xff, 2, 10])).unwrap();
        assert_eq!((a.shape, a.data), (vec![1, 3], vec![-1.0, 2.0, 10.0]));
        let a = parse_f32(&encode(">i4", &[2], &[0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe])).unwrap();
        assert_eq!(a.data, vec![256.0, -2.0]);
        // 1.0, -2.5 and the smallest subnormal in IEEE half.
        let a = parse_f32(&encode("<f2", &[3], &[0x00, 0x3c, 0x00, 0xc1, 0x01, 0x00])).unwrap();
        assert_eq!(a.data[..2], [1.0, -2.5]);
        assert!((a.data[2] - 5.960_464_5e-8).abs() < 1e-12);
        let a = parse_f32(&encode("<f8", &[], &2.25f64.to_le_bytes())).unwrap();
        assert_eq!((a.shape.len(), a.data), (0, vec![2.25]));
    }

    #[test]
    fn integers_keep_sign_width_and_order() {
        let data: Vec<u8> = [0i8, 1, -1, 10, 5, 6].iter().map(|&v| v as u8).collect();
        let a = parse_int(&encode("|i1", &[1, 2, 3], &data)).unwrap();
        assert_eq!(
            (a.shape, a.values),
            (vec![1, 2, 3], vec![0, 1, -1, 10, 5, 6])
        );
        let be: Vec<u8> = [3i16, -2, 300]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(
            parse_int(&encode(">i2", &[3], &be)).unwrap().values,
            vec![3, -2, 300]
        );
        let le: Vec<u8> = [7u64, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_int(&encode("<u8", &[2], &le)).unwrap().values,
            vec![7, 9]
        );
        assert!(
            parse_int(&encode("<f4", &[1], &[0; 4]))
                .unwrap_err()
                .contains("not an integer")
        );
    }

    #[test]
    fn fortran_order_is_reordered_to_c_order() {
        // Logical [[1,2,3],[4,5,6]] stored column-major: 1,4,2,5,3,6.
        let mut bytes = encode("|u1", &[2, 3], &[1, 4, 2, 5, 3, 6]);
        let pos = bytes.windows(5).position(|w| w == b"False").unwrap();
        bytes[pos..pos + 5].copy_from_slice(b"True ");
        assert_eq!(parse_int(&bytes).unwrap().values, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            parse_f32(&bytes).unwrap().data,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(parse_f32(b"hello world").unwrap_err().contains("magic"));
        assert!(
            parse_f32(&encode("<c8", &[1], &[0; 8]))
                .unwrap_err()
                .contains("unsupported dtype")
        );
        assert!(
            parse_f32(&encode("<f4", &[4], &[0; 8]))
                .unwrap_err()
                .contains("truncated")
        );
        let e = read_f32("/nonexistent/x.npy").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.npy"));
    }
}
