//! A minimal reader for NumPy `.npy` files holding an integer array.
//!
//! Only what label maps need: format versions 1.0–3.0, little- or big-endian
//! signed/unsigned integers of 1, 2, 4 or 8 bytes (plus `bool`), C or Fortran
//! order. The official parsing maps are `int8` with shape `[1, 224, 224]`
//! (`datasets/pretrain/preprocess/face_parse.py`, spec §4).

/// A decoded `.npy` array: its shape and its values in C (row-major) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyArray {
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element type of the array, parsed from the header's `descr`.
#[derive(Debug, Clone, Copy)]
struct Dtype {
    size: usize,
    signed: bool,
    big_endian: bool,
}

/// Parses a whole `.npy` file. Errors are plain strings; the caller adds the file name.
pub(crate) fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("missing \\x93NUMPY magic".into());
    }
    let major = bytes[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header length".into());
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        v => return Err(format!("unsupported format version {v}")),
    };
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated header")?;
    // Version 3 allows UTF-8; the keys we need are ASCII either way.
    let header = std::str::from_utf8(&bytes[header_start..header_end])
        .map_err(|_| "header is not UTF-8".to_string())?;

    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let dtype = parse_descr(descr)?;
    let fortran = match dict_value(header, "fortran_order").map(str::trim) {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err("header has no valid 'fortran_order'".into()),
    };
    let shape = parse_shape(dict_value(header, "shape").ok_or("header has no 'shape'")?)?;

    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("shape overflows")?;
    let data = &bytes[header_end..];
    let needed = count.checked_mul(dtype.size).ok_or("shape overflows")?;
    if data.len() < needed {
        return Err(format!(
            "data has {} bytes, shape {:?} needs {needed}",
            data.len(),
            shape
        ));
    }
    let mut values: Vec<i64> = data[..needed]
        .chunks_exact(dtype.size)
        .map(|c| decode(c, dtype))
        .collect();
    if fortran && shape.len() > 1 {
        values = fortran_to_c(&values, &shape);
    }
    Ok(NpyArray { shape, values })
}

/// The raw text after `'key':` in the header dict, up to the end of the dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let pos = header
        .find(&pat_single)
        .map(|p| p + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|p| p + pat_double.len()))?;
    let rest = header[pos..].trim_start();
    rest.strip_prefix(':').map(str::trim_start)
}

fn parse_descr(raw: &str) -> Result<Dtype, String> {
    let quote = raw.chars().next().ok_or("empty 'descr'")?;
    if quote != '\'' && quote != '"' {
        return Err(format!("unsupported dtype descriptor {raw:.20}"));
    }
    let body = &raw[1..];
    let end = body.find(quote).ok_or("unterminated 'descr'")?;
    let descr = &body[..end];
    let (order, rest) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let (kind, size) = rest.split_at(rest.len().min(1));
    let size: usize = size
        .parse()
        .map_err(|_| format!("unsupported dtype '{descr}'"))?;
    let signed = match kind {
        "i" => true,
        "u" | "b" => false,
        _ => {
            return Err(format!(
                "dtype '{descr}' is not an integer type (label maps must be integers)"
            ));
        }
    };
    if !matches!(size, 1 | 2 | 4 | 8) || (kind == "b" && size != 1) {
        return Err(format!("unsupported dtype '{descr}'"));
    }
    // '=' is native order; every platform we build for is little-endian, and
    // NumPy itself writes '<' or '|' for files.
    Ok(Dtype {
        size,
        signed,
        big_endian: order == '>',
    })
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

fn decode(chunk: &[u8], dt: Dtype) -> i64 {
    let mut buf = [0u8; 8];
    // Normalise to little-endian in the low bytes of an 8-byte buffer.
    if dt.big_endian {
        for (i, &b) in chunk.iter().rev().enumerate() {
            buf[i] = b;
        }
    } else {
        buf[..dt.size].copy_from_slice(chunk);
    }
    let raw = u64::from_le_bytes(buf);
    if dt.signed && dt.size < 8 {
        // Sign-extend from `size` bytes.
        let shift = 64 - 8 * dt.size as u32;
        ((raw << shift) as i64) >> shift
    } else if !dt.signed && dt.size == 8 && raw > i64::MAX as u64 {
        // Out of any label range anyway; saturate so the label check reports it.
        i64::MAX
    } else {
        raw as i64
    }
}

/// Reorders Fortran-order (column-major) values into C order.
fn fortran_to_c(values: &[i64], shape: &[usize]) -> Vec<i64> {
    let n = values.len();
    let mut out = vec![0i64; n];
    // Fortran strides: stride[0] = 1, stride[k] = stride[k-1] * shape[k-1].
    let mut f_strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        f_strides[k] = f_strides[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    for slot in out.iter_mut() {
        let f_off: usize = idx.iter().zip(&f_strides).map(|(i, s)| i * s).sum();
        *slot = values[f_off];
        // Advance the C-order multi-index (last axis fastest).
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

/// Writes a C-order `.npy` (version 1.0), for the unit tests.
#[cfg(test)]
fn write_npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_txt = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that magic + version + len + header is a multiple of 64, ending in '\n'.
    let total = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_int8_c_order() {
        let data: Vec<u8> = [0i8, 1, -1, 10, 5, 6].iter().map(|&v| v as u8).collect();
        let a = parse(&write_npy("|i1", &[1, 2, 3], &data)).unwrap();
        assert_eq!(a.shape, vec![1, 2, 3]);
        assert_eq!(a.values, vec![0, 1, -1, 10, 5, 6]);
    }

    #[test]
    fn reads_big_endian_and_wide_types() {
        let vals = [3i16, -2, 300];
        let be: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
        let a = parse(&write_npy(">i2", &[3], &be)).unwrap();
        assert_eq!(a.values, vec![3, -2, 300]);
        let le: Vec<u8> = [7u64, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = parse(&write_npy("<u8", &[2], &le)).unwrap();
        assert_eq!(b.values, vec![7, 9]);
    }

    #[test]
    fn fortran_order_is_transposed_to_c_order() {
        // Logical 2x3 array [[1,2,3],[4,5,6]] stored column-major: 1,4,2,5,3,6.
        let data = [1u8, 4, 2, 5, 3, 6];
        let mut bytes = write_npy("|u1", &[2, 3], &data);
        let pos = bytes.windows(5).position(|w| w == b"False").unwrap();
        // Same length replacement keeps the header aligned: "True " for "False".
        bytes[pos..pos + 5].copy_from_slice(b"True ");
        let a = parse(&bytes).unwrap();
        assert_eq!(a.values, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_floats_truncation_and_garbage() {
        assert!(parse(&write_npy("<f4", &[1], &[0, 0, 0, 0])).is_err());
        assert!(parse(&write_npy("|u1", &[4], &[1, 2])).is_err());
        assert!(parse(b"not a numpy file").is_err());
    }
}
