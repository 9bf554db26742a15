//! Fixture access shared by the parity tests (`tools/reference/export_model_fixtures.py`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub struct Reference {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub meta: serde_json::Value,
}

impl Reference {
    pub fn load() -> Self {
        let tensors = fsvfm_data::read_f32_safetensors(fixture("reference.safetensors"))
            .expect("reference fixtures");
        let meta =
            serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap();
        Self { tensors, meta }
    }

    pub fn values(&self, name: &str) -> &[f32] {
        &self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture {name}"))
            .1
    }

    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let (shape, data) = &self.tensors[name];
        Tensor::from_data(TensorData::new(data.clone(), shape.clone()), device)
    }

    pub fn config<T: serde::de::DeserializeOwned>(&self, case: &str) -> T {
        serde_json::from_value(self.meta["cases"][case]["config"].clone()).unwrap()
    }
}

pub fn max_abs_diff<const D: usize>(got: Tensor<D>, want: &[f32]) -> f32 {
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "element count");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
