//! Minimal NumPy `.npy` (format 1.0–3.0) reader and writer: little- or big-endian numeric dtypes
//! in, C-order only, converted to `f32`; `<f4` out.

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

/// Reads an `.npy` file of any float (f2/f4/f8), signed or unsigned integer (1–8 bytes) or bool
/// dtype into `f32`. Fortran-order and structured arrays are refused with a clear message.
pub fn read_f32(path: impl AsRef<Path>) -> Result<Array, NpyError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: name.clone(),
        source,
    })?;
    parse(&bytes).map_err(|msg| NpyError::Format { path: name, msg })
}

fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")
        .map(|h| String::from_utf8_lossy(h).into_owned())?;
    let descr = dict_value(&header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr
        .trim_start_matches(['\'', '"'])
        .split(['\'', '"'])
        .next()
        .unwrap_or("");
    if dict_value(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(
            "Fortran-order arrays are not supported: save with np.ascontiguousarray".into(),
        );
    }
    let shape_txt = dict_value(&header, "shape").ok_or("header has no 'shape'")?;
    let shape: Vec<usize> = shape_txt
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let (order, kind, size) = {
        let mut c = descr.chars();
        let order = c.next().ok_or("empty dtype")?;
        let kind = c.next().ok_or("bad dtype")?;
        let size: usize = c
            .as_str()
            .parse()
            .map_err(|_| format!("unsupported dtype '{descr}'"))?;
        (order, kind, size)
    };
    let big = order == '>';
    let body = &bytes[start + header_len..];
    if body.len() < count * size {
        return Err(format!(
            "data is truncated: {} bytes for {count} values of {size} bytes",
            body.len()
        ));
    }
    let word = |i: usize| -> [u8; 8] {
        let mut w = [0u8; 8];
        let src = &body[i * size..(i + 1) * size];
        if big {
            for (k, b) in src.iter().rev().enumerate() {
                w[k] = *b;
            }
        } else {
            w[..size].copy_from_slice(src);
        }
        w
    };
    let conv: Box<dyn Fn([u8; 8]) -> f32> = match (kind, size) {
        ('f', 4) => Box::new(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]])),
        ('f', 8) => Box::new(|w| f64::from_le_bytes(w) as f32),
        ('f', 2) => Box::new(|w| f16_to_f32(u16::from_le_bytes([w[0], w[1]]))),
        ('i', 1) => Box::new(|w| w[0] as i8 as f32),
        ('i', 2) => Box::new(|w| i16::from_le_bytes([w[0], w[1]]) as f32),
        ('i', 4) => Box::new(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as f32),
        ('i', 8) => Box::new(|w| i64::from_le_bytes(w) as f32),
        ('u', 1) | ('b', 1) => Box::new(|w| w[0] as f32),
        ('u', 2) => Box::new(|w| u16::from_le_bytes([w[0], w[1]]) as f32),
        ('u', 4) => Box::new(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as f32),
        ('u', 8) => Box::new(|w| u64::from_le_bytes(w) as f32),
        _ => return Err(format!("unsupported dtype '{descr}'")),
    };
    let data = (0..count).map(|i| conv(word(i))).collect();
    Ok(Array { shape, data })
}

/// The text after `'key':` in the header dict, up to the end of the dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}':");
    let k2 = format!("\"{key}\":");
    let i = header
        .find(&k1)
        .map(|i| i + k1.len())
        .or_else(|| header.find(&k2).map(|i| i + k2.len()))?;
    Some(header[i..].trim_start())
}

/// IEEE half → single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = (h >> 10) & 0x1f;
    let frac = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if frac == 0 => sign,
        // Subnormal: frac · 2^-24, exact in f32.
        0 => {
            return f32::from_bits(sign)
                + if sign != 0 { -1.0 } else { 1.0 } * frac as f32 * 2f32.powi(-24);
        }
        31 => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((u32::from(exp) + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Writes `data` with `shape` as a little-endian float32 `.npy` (version 1.0), atomically
/// (temp file + rename).
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    if shape.iter().product::<usize>() != data.len() {
        return Err(NpyError::Format {
            path: name,
            msg: format!("{} values do not fill shape {shape:?}", data.len()),
        });
    }
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Pad so that magic + len + header + '\n' is a multiple of 64 (the format's alignment).
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let io = |source| NpyError::Io {
        path: name.clone(),
        source,
    };
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, &out).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn roundtrip_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&p, &[2, 3, 4], &data).unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let bytes = std::fs::read(&p).unwrap();
        let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0, "header alignment");
    }

    #[test]
    fn integer_half_and_big_endian_dtypes_convert() {
        let a = parse(&npy("|i1", "(1, 3)", &[0xff, 2, 10])).unwrap();
        assert_eq!((a.shape, a.data), (vec![1, 3], vec![-1.0, 2.0, 10.0]));
        let a = parse(&npy(">i4", "(2,)", &[0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe])).unwrap();
        assert_eq!(a.data, vec![256.0, -2.0]);
        // 1.0, -2.5 and the smallest subnormal in IEEE half.
        let a = parse(&npy("<f2", "(3,)", &[0x00, 0x3c, 0x00, 0xc1, 0x01, 0x00])).unwrap();
        assert_eq!(a.data[..2], [1.0, -2.5]);
        assert!((a.data[2] - 5.960_464_5e-8).abs() < 1e-12);
        let a = parse(&npy("<f8", "()", &2.25f64.to_le_bytes())).unwrap();
        assert_eq!((a.shape.len(), a.data), (0, vec![2.25]));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(parse(b"hello world").unwrap_err().contains("magic"));
        assert!(
            parse(&npy("<c8", "(1,)", &[0; 8]))
                .unwrap_err()
                .contains("unsupported dtype")
        );
        assert!(
            parse(&npy("<f4", "(4,)", &[0; 8]))
                .unwrap_err()
                .contains("truncated")
        );
        let fortran = npy("<f4", "(1,)", &[0; 4]);
        let s = String::from_utf8_lossy(&fortran).replace("False", "True ");
        assert!(parse(s.as_bytes()).is_err());
        let e = read_f32("/nonexistent/x.npy").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.npy"));
    }
}
