//! Pre-training checkpoints: one folder per checkpoint, written atomically (a temp folder that is
//! renamed into place), holding
//!
//! - `online.safetensors`: the online network in the official key layout (what fine-tuning loads
//!   as "the encoder from a pre-training checkpoint"; `fsvfm convert` turns it into a `.pth`);
//! - `target.safetensors`: the EMA target, official keys (the official `checkpoint-te-*.pth`);
//! - `optimizer.safetensors`: AdamW moments by parameter name (`exp_avg.<name>`,
//!   `exp_avg_sq.<name>`, flattened) with the update count in the metadata;
//! - `state.json`: where to continue (next epoch, iteration, counters), the recipe and mean/std;
//! - `fsvfm.json`: the sidecar every reader uses ([`crate::sidecar`]).
//!
//! Everything is f32 as in memory, so a resume continues bit-exactly (`tests/resume.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use fsvfm_data::MeanStd;
use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::{FsfmPretrain, LoadMode, TargetNetwork, WeightFile};
use serde::{Deserialize, Serialize};

use crate::optim::{AdamW, AdamWSettings};
use crate::recipe::PretrainRecipe;
use crate::{TrainError, io_error};

/// Where a run stands, saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The first epoch still to run.
    pub next_epoch: usize,
    /// Micro-steps done so far (the EMA-momentum index).
    pub iteration: u64,
    /// Batches skipped for a non-finite loss so far.
    pub nonfinite_batches: u64,
    /// Lowest epoch-mean loss so far.
    pub best_loss: Option<f64>,
    /// The recipe of the run.
    pub recipe: PretrainRecipe,
    /// Normalisation of the pre-training set.
    pub mean_std: MeanStd,
}

const STATE: &str = "state.json";

/// Writes the checkpoint folder `dir/name` atomically (replacing an older one of that name).
pub fn save(
    dir: &Path,
    name: &str,
    online: &FsfmPretrain,
    target: &TargetNetwork,
    optim: &AdamW,
    state: &TrainState,
) -> Result<PathBuf, TrainError> {
    write_dir(dir, name, |tmp| {
        save_safetensors(online, tmp.join("online.safetensors"))?;
        save_safetensors(target, tmp.join("target.safetensors"))?;
        save_optimizer(optim, &tmp.join("optimizer.safetensors"))?;
        crate::sidecar::Sidecar::pretrain(state).write(tmp)?;
        write_state(tmp, state)
    })
}

/// Writes `state` as the folder's `state.json` (the file whose presence marks it complete).
pub fn write_state<T: Serialize>(dir: &Path, state: &T) -> Result<(), TrainError> {
    let json =
        serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    fsvfm_model::checkpoint::write_atomic(&dir.join(STATE), &json)?;
    Ok(())
}

/// Keeps the lines of a JSONL log that `keep` accepts and drops the rest (and any line that is
/// not JSON: the torn last line of a killed run), rewriting the file atomically. A resume calls it
/// so the log ends where the checkpoint it continues ends. A missing log is left missing.
pub fn cut_log(
    path: &Path,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<usize, TrainError> {
    let text = match fsvfm_data::input::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut kept = String::with_capacity(text.len());
    let mut dropped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if keep(&v) => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        fsvfm_model::checkpoint::write_atomic(path, kept.as_bytes())?;
    }
    Ok(dropped)
}

/// Fills a temporary folder with `fill`, then renames it to `dir/name` (replacing an older one):
/// a reader, or a run killed at any point, sees either the old folder or the complete new one.
pub fn write_dir(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let final_dir = dir.join(name);
    let tmp = fsvfm_data::outdir::temp_path(&final_dir, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
    fill(&tmp)?;
    let old = fsvfm_data::outdir::temp_path(&final_dir, "old");
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old).map_err(io_error(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io_error(&final_dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
    }
    Ok(final_dir)
}

/// Writes AdamW's moments (`exp_avg.<name>`, `exp_avg_sq.<name>`, flattened f32) with the update
/// count and settings in the metadata.
pub fn save_optimizer(optim: &AdamW, path: &Path) -> Result<(), TrainError> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, map) in [
        ("exp_avg", &optim.exp_avg),
        ("exp_avg_sq", &optim.exp_avg_sq),
    ] {
        for (name, t) in map {
            let v = t
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Checkpoint(format!("{name}: {e:?}")))?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            bufs.push((format!("{prefix}.{name}"), vec![v.len()], bytes));
        }
    }
    let views = bufs
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| TrainError::Checkpoint(format!("{n}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([
        ("step".to_string(), optim.step.to_string()),
        ("coupled_l2".to_string(), optim.coupled_l2.to_string()),
        (
            "settings".to_string(),
            serde_json::to_string(&optim.settings).unwrap_or_default(),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    fsvfm_model::checkpoint::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads what [`save_optimizer`] wrote, onto `device`.
pub fn load_optimizer(path: &Path, device: &Device) -> Result<AdamW, TrainError> {
    let bytes = fsvfm_data::input::read(path, fsvfm_data::input::Kind::Checkpoint)
        .map_err(io_error(path))?;
    let bad = |e: String| TrainError::Checkpoint(format!("{}: {e}", path.display()));
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let step: u64 = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no update count".into()))?;
    let settings: AdamWSettings = meta
        .get("settings")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("no AdamW settings".into()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut exp_avg = BTreeMap::new();
    let mut exp_avg_sq = BTreeMap::new();
    for (key, view) in st.tensors() {
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let n = v.len();
        let t = Tensor::<1>::from_data(TensorData::new(v, [n]), device);
        if let Some(name) = key.strip_prefix("exp_avg_sq.") {
            exp_avg_sq.insert(name.to_string(), t);
        } else if let Some(name) = key.strip_prefix("exp_avg.") {
            exp_avg.insert(name.to_string(), t);
        } else {
            return Err(bad(format!("unexpected tensor {key}")));
        }
    }
    Ok(AdamW {
        settings,
        step,
        exp_avg,
        exp_avg_sq,
        coupled_l2: meta.get("coupled_l2").is_some_and(|v| v == "true"),
        ..AdamW::default()
    })
}

/// Reads only the `state.json` of a checkpoint folder.
pub fn read_state<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, TrainError> {
    let p = dir.join(STATE);
    let bytes = fsvfm_data::input::read(&p, fsvfm_data::input::Kind::Text).map_err(io_error(&p))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))
}

/// A loaded checkpoint.
pub struct Loaded {
    /// Online network (on the autodiff device given to [`load`]).
    pub online: FsfmPretrain,
    /// Target network (plain device).
    pub target: TargetNetwork,
    /// Optimiser.
    pub optim: AdamW,
    /// Run state.
    pub state: TrainState,
}

/// Loads a checkpoint folder; networks are built from the saved recipe and loaded strictly.
pub fn load(dir: &Path, device: &Device) -> Result<Loaded, TrainError> {
    let state: TrainState = read_state(dir)?;
    let cfg = &state.recipe.model;
    let ad = device.clone().autodiff();
    let (online, _) = WeightFile::open(dir.join("online.safetensors"))?
        .load_into(FsfmPretrain::new(cfg, &ad), LoadMode::Strict)?;
    let (target, _) = WeightFile::open(dir.join("target.safetensors"))?
        .load_into(TargetNetwork::new(cfg, device), LoadMode::Strict)?;
    let optim = load_optimizer(&dir.join("optimizer.safetensors"), device)?;
    Ok(Loaded {
        online,
        target,
        optim,
        state,
    })
}

/// The `checkpoint-<epoch>` folder with the highest epoch under `dir` that is complete (has its
/// `state.json`), if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let epoch: usize = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join(STATE).is_file().then_some((epoch, e.path()))
        })
        .max_by_key(|(epoch, _)| *epoch)
        .map(|(_, p)| p)
}

/// The largest `|a − b|` between the online and target parameters of two checkpoint folders
/// with the same names and shapes: how far two runs that should train alike (data-parallel
/// against single-worker, processes against threads) ended apart.
///
/// The key third of every `attn.qkv.bias` is left out: its gradient is exactly zero in exact
/// arithmetic (softmax ignores a constant added to every logit of a row), so it receives only
/// round-off, which AdamW scales up to steps of size lr; two runs that sum in different orders
/// disagree there by design.
pub fn max_parameter_difference(a: &Path, b: &Path) -> Result<f32, TrainError> {
    let read = |dir: &Path, file: &str| {
        let path = dir.join(file);
        fsvfm_data::input::read(&path, fsvfm_data::input::Kind::Checkpoint).map_err(io_error(&path))
    };
    let bad = TrainError::Checkpoint;
    let mut worst = 0.0f32;
    for file in ["online.safetensors", "target.safetensors"] {
        let (x, y) = (read(a, file)?, read(b, file)?);
        let parse = |bytes| {
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{file}: {e}")))
        };
        let (x, y) = (parse(&x)?, parse(&y)?);
        let (mut xn, mut yn) = (x.names(), y.names());
        xn.sort();
        yn.sort();
        if xn != yn {
            return Err(bad(format!("{file}: the two runs hold different tensors")));
        }
        for name in xn {
            let p = x.tensor(name).map_err(|e| bad(e.to_string()))?;
            let q = y.tensor(name).map_err(|e| bad(e.to_string()))?;
            if p.shape() != q.shape() {
                return Err(bad(format!("{file}: {name} has two shapes")));
            }
            let values = |d: &[u8]| -> Vec<f32> {
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let (u, v) = (values(p.data()), values(q.data()));
            let n = u.len();
            let key = |i: usize| name.ends_with("attn.qkv.bias") && (n / 3..2 * n / 3).contains(&i);
            for (i, (s, t)) in u.iter().zip(&v).enumerate() {
                if !key(i) {
                    worst = worst.max((s - t).abs());
                }
            }
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_log_keeps_what_the_checkpoint_did_and_drops_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log.jsonl");
        assert_eq!(cut_log(&log, |_| true).unwrap(), 0);
        assert!(!log.exists());
        let mut text = String::new();
        for i in 0..15 {
            text.push_str(&format!("{{\"kind\":\"iter\",\"iteration\":{i}}}\n"));
        }
        text.push_str("{\"kind\":\"iter\",\"itera");
        std::fs::write(&log, &text).unwrap();
        let dropped = cut_log(&log, |v| v["iteration"].as_u64().is_some_and(|i| i < 12)).unwrap();
        assert_eq!(dropped, 4);
        let kept: Vec<u64> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["iteration"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(kept, (0..12).collect::<Vec<_>>());
    }
}
