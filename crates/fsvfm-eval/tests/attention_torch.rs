//! The attention analyses (FS-VFM Fig. 4) against PyTorch: `attention_torch.json`, exported by
//! `tools/reference/export_attention_fixtures.py` (float64 torch on the same float32
//! probabilities). Tolerance: 1e-9 relative (both sides accumulate in f64).

use fsvfm_eval::AttentionAccumulator;

fn fixture() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/attention_torch.json"
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn values(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_rel(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1e-12),
            "{what}[{i}]: {g} vs torch {w}"
        );
    }
}

#[test]
fn mean_distance_and_head_kl_match_torch_on_a_non_square_grid() {
    let f = &fixture()["synthetic"];
    let shape: Vec<usize> = values(&f["shape"]).iter().map(|&v| v as usize).collect();
    let (n, h) = (shape[0], shape[1]);
    let probs: Vec<f32> = values(&f["probs"]).iter().map(|&v| v as f32).collect();
    let (rows, cols, patch) = (
        f["rows"].as_u64().unwrap() as usize,
        f["cols"].as_u64().unwrap() as usize,
        f["patch"].as_u64().unwrap() as usize,
    );
    let mut acc = AttentionAccumulator::new(1, h, rows, cols, patch).unwrap();
    // Two batches of one image: the means are over images, whatever the batching.
    let per = probs.len() / n;
    acc.add(0, &probs[..per], 1).unwrap();
    acc.add(0, &probs[per..], 1).unwrap();
    let s = acc.finish().unwrap();
    assert_eq!((s.blocks, s.heads, s.images), (1, h, n));
    assert_rel(
        "MAD",
        &s.mean_attention_distance[0],
        &values(&f["mad"]),
        1e-9,
    );
    assert_rel("KL", &s.kl_divergence[0], &values(&f["kl"]), 1e-9);
}
