//! Helpers shared by the integration tests.

// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

pub use fsvfm_data::F32Tensors as Tensors;

/// Reads every tensor of an f32 safetensors file.
pub fn read(path: &std::path::Path) -> Tensors {
    fsvfm_data::read_f32_safetensors(path).unwrap()
}

/// `|a − b| / |b|` (with `|b|` floored at 1e-12).
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Writes the tensors of `r` whose names start with `prefix` to a safetensors file, without the
/// prefix (a fixture's `init.*` weights as a loadable checkpoint).
pub fn write_stripped(r: &Tensors, prefix: &str, path: &std::path::Path) {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = r
        .iter()
        .filter_map(|(k, (s, v))| {
            let name = k.strip_prefix(prefix)?;
            Some((
                name.to_string(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ))
        })
        .collect();
    let views: Vec<_> = owned
        .iter()
        .map(|(n, s, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            (n.clone(), v)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}
