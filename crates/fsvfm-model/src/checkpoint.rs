//! Weight files: the official `.pth` checkpoints as released and safetensors with the same names
//! (spec §8), strict by default, and export in the official layout.
//!
//! A `.pth` is read through burn's pickle reader: the `torch.save` dict (`model`, `optimizer`,
//! `epoch`, `scaler`, a pickled `argparse.Namespace` under `args`) is read lazily and only the
//! `model` tensors are touched; a bare `state_dict` file works too. Tensors keep PyTorch's layout
//! in both formats (Linear weights `[out, in]`, LayerNorm `weight/bias`); burn's PyTorch adapter
//! converts on load and back on export.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{
    ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use burn::tensor::{DType, Tensor};

use crate::ModelError;

/// Container format of a weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` output (zip or legacy pickle), `.pth` / `.pt` / `.bin`.
    Pytorch,
    /// `.safetensors`.
    Safetensors,
}

/// What a weight file holds, told from its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointKind {
    /// A pre-training online network (has `decoder_embed.*`).
    Pretrain,
    /// A pre-training target network (`projector.*` and `rep_decoder_*`, no pixel decoder).
    Target,
    /// An FS-Adapter classifier (has `adapter.linear1.weight`).
    Adapter,
    /// A face anti-spoofing classifier (has `embedder.bottleneck_layer_fc.weight`).
    Fas,
    /// A ViT classifier (has `head.weight`) or a bare encoder.
    Classifier,
}

/// How strictly [`WeightFile::load_into`] matches file keys to model parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Every model parameter must be in the file and every file tensor must be used
    /// (PyTorch's `strict=True`).
    Strict,
    /// Load whatever matches by name; missing parameters keep their initial values and extra file
    /// tensors are ignored. This is the official "encoder from a pre-training checkpoint" load
    /// (`strict=False`: a fresh `fc_norm`/`head`, decoders and projectors ignored). Shape
    /// mismatches are errors in both modes.
    Partial,
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters loaded from the file.
    pub applied: Vec<String>,
    /// Model parameters the file lacks (kept at their initial values).
    pub missing: Vec<String>,
    /// File tensors the model has no parameter for.
    pub unexpected: Vec<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tensors loaded", self.applied.len())?;
        if !self.missing.is_empty() {
            write!(f, "; missing (left at init): {}", summarize(&self.missing))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; unused from file: {}", summarize(&self.unexpected))?;
        }
        Ok(())
    }
}

/// `a, b, c (+N more)` with block indices folded (`blocks.{i}.x`) so long lists stay readable.
fn summarize(keys: &[String]) -> String {
    let mut folded: Vec<String> = keys
        .iter()
        .map(|k| {
            k.split('.')
                .map(|s| {
                    if s.chars().all(|c| c.is_ascii_digit()) {
                        "{i}"
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    folded.dedup();
    let mut seen = std::collections::BTreeSet::new();
    folded.retain(|k| seen.insert(k.clone()));
    const SHOW: usize = 12;
    let more = folded.len().saturating_sub(SHOW);
    let mut s = folded.into_iter().take(SHOW).collect::<Vec<_>>().join(", ");
    if more > 0 {
        s.push_str(&format!(" (+{more} more)"));
    }
    s
}

/// An opened weight file: its format, where the state dict sits, and its tensor names and shapes.
#[derive(Clone, Debug)]
pub struct WeightFile {
    path: PathBuf,
    /// Where the tensors are read from: `path`, or a re-packed copy (see [`crate::repack`]).
    read_path: PathBuf,
    _repacked: Option<std::sync::Arc<tempfile::TempPath>>,
    format: WeightFormat,
    top_level_key: Option<String>,
    shapes: BTreeMap<String, Vec<usize>>,
}

/// A safetensors file starts with its JSON header's length (u64, little endian) and the header's
/// `{`. The length's low byte can be anything, 0x80 included, which is also pickle's first byte:
/// so this is checked before [`is_pytorch`].
fn is_safetensors(head: &[u8; 9], file_len: u64) -> bool {
    let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    head[8] == b'{' && n.checked_add(8).is_some_and(|end| end <= file_len)
}

/// A zip archive (torch ≥ 1.6) or a pickle stream (legacy `torch.save`: `0x80`, protocol 2–5).
fn is_pytorch(head: &[u8; 9]) -> bool {
    head.starts_with(b"PK\x03\x04") || (head[0] == 0x80 && (2..=5).contains(&head[1]))
}

impl WeightFile {
    /// Opens `path` and reads its tensor names and shapes (no tensor data). The format comes from
    /// the file's first bytes (safetensors header vs zip / pickle), not its extension.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref().to_path_buf();
        let io = |e: std::io::Error| {
            ModelError::Checkpoint(format!("cannot read {}: {e}", path.display()))
        };
        let mut head = [0u8; 9];
        let len = {
            use std::io::Read;
            // Regular files within the checkpoint cap only (no FIFO, device or 1 TB sparse file).
            let (mut f, _) =
                fsvfm_data::input::open_bounded(&path, fsvfm_data::input::Kind::Checkpoint)
                    .map_err(|e| io(e.into()))?;
            f.read_exact(&mut head).map_err(|_| {
                ModelError::Checkpoint(format!(
                    "{} is too short to be a weight file",
                    path.display()
                ))
            })?;
            f.metadata().map_err(io)?.len()
        };
        if is_safetensors(&head, len) || !is_pytorch(&head) {
            Self::open_safetensors(path)
        } else {
            Self::open_pytorch(path)
        }
    }

    fn open_pytorch(path: PathBuf) -> Result<Self, ModelError> {
        let bad = |e: &dyn fmt::Display| {
            ModelError::Checkpoint(format!(
                "{} is not a readable PyTorch checkpoint: {e}",
                path.display()
            ))
        };
        // The released checkpoints nest the weights under "model"; bare state dicts do not.
        let read = |p: &Path| match PytorchReader::with_top_level_key(p, "model") {
            Ok(r) => Ok((r, Some("model".to_string()))),
            Err(nested) => match PytorchReader::new(p) {
                Ok(r) => Ok((r, None)),
                Err(bare) => Err(format!("{nested}; as a bare state dict: {bare}")),
            },
        };
        let (read_path, repacked, (reader, key)) = match read(&path) {
            Ok(found) => (path.clone(), None, found),
            Err(e) if e.contains("zip archive error") => {
                let tmp = crate::repack::repack(&path)
                    .map_err(|re| bad(&format!("{e} (re-packing failed too: {re})")))?;
                let found = read(&tmp).map_err(|e| bad(&e))?;
                (tmp.to_path_buf(), Some(std::sync::Arc::new(tmp)), found)
            }
            Err(e) => return Err(bad(&e)),
        };
        let shapes: BTreeMap<_, _> = reader
            .tensors()
            .iter()
            .map(|(k, t)| (k.clone(), t.shape().to_vec()))
            .collect();
        if shapes.is_empty() {
            return Err(bad(
                &"no tensors found (expected a state dict, or a dict with a 'model' entry)",
            ));
        }
        Ok(Self {
            path,
            read_path,
            _repacked: repacked,
            format: WeightFormat::Pytorch,
            top_level_key: key,
            shapes,
        })
    }

    fn open_safetensors(path: PathBuf) -> Result<Self, ModelError> {
        let bytes = fsvfm_data::input::read(&path, fsvfm_data::input::Kind::Checkpoint)
            .map_err(|e| ModelError::Checkpoint(format!("cannot read {}: {e}", path.display())))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            ModelError::Checkpoint(format!(
                "{} is neither a PyTorch checkpoint nor a valid safetensors file: {e}",
                path.display()
            ))
        })?;
        let shapes = st
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.shape().to_vec()))
            .collect();
        Ok(Self {
            read_path: path.clone(),
            path,
            _repacked: None,
            format: WeightFormat::Safetensors,
            top_level_key: None,
            shapes,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the archive had to be re-packed to be read (a zip layout burn's reader rejects).
    pub fn repacked(&self) -> bool {
        self._repacked.is_some()
    }

    /// The container format.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Tensor names and shapes, sorted by name.
    pub fn shapes(&self) -> &BTreeMap<String, Vec<usize>> {
        &self.shapes
    }

    /// The model family the keys belong to.
    pub fn kind(&self) -> CheckpointKind {
        let has = |k: &str| self.shapes.contains_key(k);
        if has("adapter.linear1.weight") {
            CheckpointKind::Adapter
        } else if has("embedder.bottleneck_layer_fc.weight") {
            CheckpointKind::Fas
        } else if has("decoder_embed.weight") {
            CheckpointKind::Pretrain
        } else if has("rep_decoder_embed.weight") {
            CheckpointKind::Target
        } else {
            CheckpointKind::Classifier
        }
    }

    /// Loads the file into `model` (parameters matched by their official names).
    ///
    /// Errors name every mis-shaped tensor, and in [`LoadMode::Strict`] every missing and unused
    /// one. Half-precision files are cast to f32 after loading.
    pub fn load_into<M: Module + ModuleSnapshot>(
        &self,
        model: M,
        mode: LoadMode,
    ) -> Result<(M, LoadReport), ModelError> {
        let mut model = model;
        let ctx = |e: &dyn fmt::Display| {
            ModelError::Checkpoint(format!("loading {}: {e}", self.path.display()))
        };
        let result: ApplyResult = match self.format {
            WeightFormat::Pytorch => {
                let mut store = PytorchStore::from_file(&self.read_path)
                    .allow_partial(true)
                    .validate(false)
                    .skip_enum_variants(true)
                    // Keep `projection_head.{0,1,3}` as they are: our Sequential keeps the ReLU slot.
                    .map_indices_contiguous(false);
                if let Some(key) = &self.top_level_key {
                    store = store.with_top_level_key(key.clone());
                }
                model.load_from(&mut store).map_err(|e| ctx(&e))?
            }
            WeightFormat::Safetensors => {
                let mut store = SafetensorsStore::from_file(&self.read_path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .allow_partial(true)
                    .validate(false)
                    .skip_enum_variants(true);
                model.load_from(&mut store).map_err(|e| ctx(&e))?
            }
        };
        if !result.errors.is_empty() {
            let list: Vec<String> = result.errors.iter().map(|e| format!("  {e}")).collect();
            return Err(ModelError::Checkpoint(format!(
                "{} does not fit this model ({} tensors with the wrong shape or type; is the model preset right?):\n{}",
                self.path.display(),
                result.errors.len(),
                list.join("\n")
            )));
        }
        let report = LoadReport {
            applied: result.applied.clone(),
            missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
            unexpected: result.unused.clone(),
        };
        if mode == LoadMode::Strict && (!report.missing.is_empty() || !report.unexpected.is_empty())
        {
            let mut msg = format!(
                "{} does not match the model's parameters (strict load):",
                self.path.display()
            );
            if !report.missing.is_empty() {
                msg.push_str(&format!(
                    "\n  missing from the file: {}",
                    summarize(&report.missing)
                ));
            }
            if !report.unexpected.is_empty() {
                msg.push_str(&format!(
                    "\n  unexpected in the file: {}",
                    summarize(&report.unexpected)
                ));
            }
            return Err(ModelError::Checkpoint(msg));
        }
        let model = model.map(&mut CastToF32);
        check_finite(&model, &self.path)?;
        Ok((model, report))
    }
}

/// Refuses a model with a NaN or infinite parameter: such weights score every face NaN (`p_fake`
/// null) or train nowhere, and the file is what is wrong. Names the first bad tensor.
fn check_finite<M: Module + ModuleSnapshot>(model: &M, path: &Path) -> Result<(), ModelError> {
    for t in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let Ok(data) = burn::store::bridge::to_data(&t) else {
            continue;
        };
        if !data.dtype().is_float() {
            continue;
        }
        let Ok(values) = data.as_slice::<f32>() else {
            continue;
        };
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(ModelError::Checkpoint(format!(
                "{}: tensor {} holds {bad} NaN or infinite values of {}; the weights are broken \
                 (a diverged run?), not usable",
                path.display(),
                t.name,
                values.len()
            )));
        }
    }
    Ok(())
}

/// Casts every float parameter to f32 (fp16 checkpoints load as f16 parameters otherwise, and the
/// first f32 op then fails: spec burn-notes §1).
struct CastToF32;

impl ModuleMapper for CastToF32 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.val().dtype() == DType::F32 {
            return param;
        }
        param.map(|t| t.cast(DType::F32))
    }
}

/// Writes `model` as safetensors in the official layout and names, atomically (temp file + rename).
pub fn save_safetensors<M: Module + ModuleSnapshot>(
    model: &M,
    path: impl AsRef<Path>,
) -> Result<(), ModelError> {
    let path = path.as_ref();
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true);
    model
        .save_into(&mut store)
        .map_err(|e| ModelError::Checkpoint(format!("serialising weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| ModelError::Checkpoint(format!("serialising weights: {e}")))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, synced
/// ([`fsvfm_data::write_atomic`] with `durable`: checkpoints must survive a power cut), so a crash
/// never leaves a truncated file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    fsvfm_data::write_atomic(path, bytes, true)
        .map_err(|e| ModelError::Checkpoint(format!("writing {}: {e}", path.display())))
}

/// Converts a `.pth` checkpoint into safetensors with the same tensor names, layouts and dtypes
/// (the `model` entry of an official checkpoint, or a bare state dict). Returns the tensor count.
pub fn convert_pth_to_safetensors(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
) -> Result<usize, ModelError> {
    use burn::store::pytorch_reader::DType as P;
    use safetensors::Dtype as S;
    let wf = WeightFile::open(&input)?;
    if wf.format != WeightFormat::Pytorch {
        return Err(ModelError::Checkpoint(format!(
            "{} is already safetensors",
            input.as_ref().display()
        )));
    }
    let reader = match &wf.top_level_key {
        Some(k) => PytorchReader::with_top_level_key(&wf.read_path, k),
        None => PytorchReader::new(&wf.read_path),
    }
    .map_err(|e| ModelError::Checkpoint(format!("reading {}: {e}", wf.path.display())))?;
    let mut tensors: Vec<(String, S, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in reader.tensors() {
        let dtype = match t.dtype() {
            P::F64 => S::F64,
            P::F32 => S::F32,
            P::F16 => S::F16,
            P::BF16 => S::BF16,
            P::I64 => S::I64,
            P::I32 => S::I32,
            P::I16 => S::I16,
            P::I8 => S::I8,
            P::U64 => S::U64,
            P::U32 => S::U32,
            P::U16 => S::U16,
            P::U8 => S::U8,
            P::Bool => S::BOOL,
        };
        let data = t
            .read()
            .map_err(|e| ModelError::Checkpoint(format!("reading tensor {name}: {e}")))?;
        tensors.push((name.clone(), dtype, t.shape().to_vec(), data));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Checkpoint(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| ModelError::Checkpoint(format!("serialising safetensors: {e}")))?;
    write_atomic(output.as_ref(), &bytes)?;
    Ok(tensors.len())
}

/// The parameter names and shapes `model` has in the official PyTorch layout (what
/// [`save_safetensors`] would write), without materialising any tensor data.
pub fn official_shapes<M: Module + ModuleSnapshot>(model: &M) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.iter().copied().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file whose header length ends in the byte 0x80 (pickle's first byte) is
    /// still read as safetensors: a real fine-tuning checkpoint had a 4992-byte (0x1380) header.
    #[test]
    fn safetensors_header_length_ending_in_0x80_is_not_pickle() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![0u8; 16];
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
        let mut found = false;
        for pad in 0..512 {
            let meta = std::collections::HashMap::from([("pad".to_string(), "x".repeat(pad))]);
            let bytes = safetensors::serialize([("w", view.clone())], Some(meta)).unwrap();
            if bytes[0] != 0x80 {
                continue;
            }
            let p = dir.path().join("w.safetensors");
            std::fs::write(&p, &bytes).unwrap();
            let wf = WeightFile::open(&p).unwrap();
            assert_eq!(wf.format(), WeightFormat::Safetensors);
            assert_eq!(wf.shapes()["w"], vec![4]);
            found = true;
            break;
        }
        assert!(found, "no padding gave a header length ending in 0x80");
        // And a pickle stream is still taken for PyTorch (and refused here as not a checkpoint).
        let p = dir.path().join("x.pth");
        std::fs::write(&p, b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01u.").unwrap();
        let e = WeightFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("PyTorch"), "{e}");
    }
}
