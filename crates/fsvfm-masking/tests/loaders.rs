//! Loading label maps from `.npy` and `.png` files written by the tests.

use std::io::Write;
use std::path::Path;

use fsvfm_masking::{LabelMap, MaskError};

/// Writes `.npy` bytes the way `numpy.save` lays them out (format 1.0: magic,
/// version, u16 header length, dict padded with spaces to a 64-byte boundary, '\n').
fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    assert_eq!((out.len() - data.len()) % 64, 0);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

#[test]
fn npy_int8_1hw_like_the_official_maps() {
    let dir = tempfile::tempdir().unwrap();
    let vals: [i8; 6] = [0, 1, 2, 10, 9, 5];
    let data: Vec<u8> = vals.iter().map(|&v| v as u8).collect();
    let path = write(dir.path(), "a.npy", &npy_bytes("|i1", "(1, 2, 3)", &data));
    let map = LabelMap::load(&path).unwrap();
    assert_eq!((map.height(), map.width()), (2, 3));
    assert_eq!(map.labels(), &[0, 1, 2, 10, 9, 5]);
    // Same via the explicit loader and from bytes.
    assert_eq!(LabelMap::from_npy_file(&path).unwrap(), map);
    assert_eq!(
        LabelMap::from_npy_bytes(&std::fs::read(&path).unwrap()).unwrap(),
        map
    );
}

#[test]
fn npy_other_integer_dtypes_and_2d_shape() {
    let vals: [i64; 4] = [3, 0, 10, 1];
    let i8le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let map = LabelMap::from_npy_bytes(&npy_bytes("<i8", "(2, 2)", &i8le)).unwrap();
    assert_eq!(map.labels(), &[3, 0, 10, 1]);
    let u2be: Vec<u8> = vals
        .iter()
        .flat_map(|&v| (v as u16).to_be_bytes())
        .collect();
    let map2 = LabelMap::from_npy_bytes(&npy_bytes(">u2", "(2, 2)", &u2be)).unwrap();
    assert_eq!(map2, map);
    let u1: Vec<u8> = vals.iter().map(|&v| v as u8).collect();
    assert_eq!(
        LabelMap::from_npy_bytes(&npy_bytes("|u1", "(1, 2, 2)", &u1)).unwrap(),
        map
    );
}

#[test]
fn npy_errors_are_reported_not_panicked() {
    // Label out of range, negative label.
    let err = LabelMap::from_npy_bytes(&npy_bytes("|u1", "(2, 2)", &[0, 1, 2, 11])).unwrap_err();
    assert!(
        matches!(
            err,
            MaskError::InvalidLabel {
                value: 11,
                row: 1,
                col: 1
            }
        ),
        "{err}"
    );
    let err = LabelMap::from_npy_bytes(&npy_bytes("|i1", "(2, 2)", &[0, 0xff, 2, 1])).unwrap_err();
    assert!(
        matches!(
            err,
            MaskError::InvalidLabel {
                value: -1,
                row: 0,
                col: 1
            }
        ),
        "{err}"
    );
    // Float dtype, wrong rank, batch dimension > 1, truncated data, empty.
    assert!(matches!(
        LabelMap::from_npy_bytes(&npy_bytes("<f4", "(1, 1)", &[0, 0, 0, 0])),
        Err(MaskError::Npy { .. })
    ));
    assert!(matches!(
        LabelMap::from_npy_bytes(&npy_bytes("|u1", "(4,)", &[0, 1, 2, 3])),
        Err(MaskError::Npy { .. })
    ));
    assert!(matches!(
        LabelMap::from_npy_bytes(&npy_bytes("|u1", "(2, 1, 2)", &[0, 1, 2, 3])),
        Err(MaskError::Npy { .. })
    ));
    assert!(matches!(
        LabelMap::from_npy_bytes(&npy_bytes("|u1", "(2, 2)", &[0, 1])),
        Err(MaskError::Npy { .. })
    ));
    assert!(matches!(
        LabelMap::from_npy_bytes(&npy_bytes("|u1", "(0, 5)", &[])),
        Err(MaskError::EmptyMap { .. })
    ));
    assert!(matches!(
        LabelMap::from_npy_bytes(b"\x93NUMPY garbage"),
        Err(MaskError::Npy { .. })
    ));
}

fn png_bytes(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if color == png::ColorType::Indexed {
            // A palette whose colours have nothing to do with the indices.
            enc.set_palette(
                (0..=10u8)
                    .flat_map(|i| [255 - i, i * 20, 7])
                    .collect::<Vec<_>>(),
            );
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
    }
    out
}

#[test]
fn png_grayscale_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1];
    let path = write(
        dir.path(),
        "m.PNG",
        &png_bytes(4, 3, png::ColorType::Grayscale, png::BitDepth::Eight, &data),
    );
    let map = LabelMap::load(&path).unwrap();
    assert_eq!((map.height(), map.width()), (3, 4));
    assert_eq!(map.labels(), &data);
    // Indexed: the palette index is the label.
    let idx = LabelMap::from_png_bytes(&png_bytes(
        4,
        3,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        &data,
    ))
    .unwrap();
    assert_eq!(idx, map);
    // Our own writer round-trips.
    let out = dir.path().join("out.png");
    map.save_png(&out).unwrap();
    assert_eq!(LabelMap::load(&out).unwrap(), map);
}

#[test]
fn png_errors_are_reported_not_panicked() {
    let rgb = png_bytes(2, 1, png::ColorType::Rgb, png::BitDepth::Eight, &[0; 6]);
    assert!(matches!(
        LabelMap::from_png_bytes(&rgb),
        Err(MaskError::UnsupportedPng { .. })
    ));
    let g16 = png_bytes(
        2,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &[0; 4],
    );
    assert!(matches!(
        LabelMap::from_png_bytes(&g16),
        Err(MaskError::UnsupportedPng { .. })
    ));
    let bad_label = png_bytes(
        2,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[1, 255],
    );
    assert!(matches!(
        LabelMap::from_png_bytes(&bad_label),
        Err(MaskError::InvalidLabel {
            value: 255,
            row: 0,
            col: 1
        })
    ));
    assert!(matches!(
        LabelMap::from_png_bytes(b"\x89PNG nope"),
        Err(MaskError::Png { .. })
    ));
}

#[test]
fn file_level_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        LabelMap::load(dir.path().join("missing.npy")),
        Err(MaskError::Io { .. })
    ));
    let txt = write(dir.path(), "map.txt", b"0 1");
    assert!(matches!(
        LabelMap::load(&txt),
        Err(MaskError::UnsupportedExtension(_))
    ));
    let fake = write(dir.path(), "fake.png", b"not a png");
    let err = LabelMap::load(&fake).unwrap_err();
    assert!(
        err.to_string().contains("fake.png"),
        "error should name the file: {err}"
    );
}
