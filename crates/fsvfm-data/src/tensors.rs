//! Reading f32 tensors from safetensors files (reference fixtures, exported weights).

use std::collections::HashMap;
use std::path::Path;

/// Name → (shape, values) of every tensor of an f32 safetensors file.
pub type F32Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of a safetensors file whose tensors are all f32.
pub fn read_f32_safetensors(path: impl AsRef<Path>) -> Result<F32Tensors, String> {
    let path = path.as_ref();
    let bytes = crate::input::read_bounded(path, crate::input::Kind::Array)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            if v.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "{}: tensor {k} is {:?}, not f32",
                    path.display(),
                    v.dtype()
                ));
            }
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((k, (v.shape().to_vec(), data)))
        })
        .collect()
}
