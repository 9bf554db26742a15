//! Helpers shared by the integration tests.

pub use fsvfm_data::F32Tensors as Tensors;

/// Reads every tensor of an f32 safetensors file.
pub fn read(path: &std::path::Path) -> Tensors {
    fsvfm_data::read_f32_safetensors(path).unwrap()
}

/// `|a − b| / |b|` (with `|b|` floored at 1e-12).
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}
