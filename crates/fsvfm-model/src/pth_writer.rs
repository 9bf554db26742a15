//! Writes weights as a PyTorch `.pth` (the zip format of `torch.save`, archive version 3) holding
//! `{'model': OrderedDict(name → tensor)}`, the layout the official code reads with
//! `torch.load(path)['model']`. Only plain tensors are pickled (`torch._utils._rebuild_tensor_v2`,
//! typed storages, `collections.OrderedDict`), so `torch.load(..., weights_only=True)` accepts it.

use std::io::Write;
use std::path::Path;

use safetensors::Dtype;

use crate::ModelError;

/// Pickle protocol-2 opcodes used here.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINPERSID: u8 = b'Q';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn str(&mut self, s: &str) {
        self.0.push(op::BINUNICODE);
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
    }
    fn int(&mut self, v: u64) {
        match i32::try_from(v) {
            Ok(v) => {
                self.0.push(op::BININT);
                self.0.extend(v.to_le_bytes());
            }
            Err(_) => {
                self.0.extend([op::LONG1, 8]);
                self.0.extend(v.to_le_bytes());
            }
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(op::GLOBAL);
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
    }
    fn ints_tuple(&mut self, v: &[usize]) {
        if v.is_empty() {
            self.0.push(op::EMPTY_TUPLE);
            return;
        }
        self.0.push(op::MARK);
        for &x in v {
            self.int(x as u64);
        }
        self.0.push(op::TUPLE);
    }
    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend([op::EMPTY_TUPLE, op::REDUCE]);
    }
}

fn storage_type(d: Dtype) -> Option<(&'static str, usize)> {
    Some(match d {
        Dtype::F32 => ("FloatStorage", 4),
        Dtype::F64 => ("DoubleStorage", 8),
        Dtype::F16 => ("HalfStorage", 2),
        Dtype::BF16 => ("BFloat16Storage", 2),
        Dtype::I64 => ("LongStorage", 8),
        Dtype::I32 => ("IntStorage", 4),
        Dtype::I16 => ("ShortStorage", 2),
        Dtype::I8 => ("CharStorage", 1),
        Dtype::U8 => ("ByteStorage", 1),
        Dtype::BOOL => ("BoolStorage", 1),
        _ => return None,
    })
}

/// Converts a safetensors file into an official-layout `.pth` (`{'model': state_dict}`), keeping
/// names, shapes and dtypes. Returns the tensor count. Written atomically.
pub fn convert_safetensors_to_pth(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
) -> Result<usize, ModelError> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let err = |e: String| ModelError::Checkpoint(format!("{}: {e}", input.display()));
    let bytes = fsvfm_data::input::read(input, fsvfm_data::input::Kind::Checkpoint)
        .map_err(|e| err(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut p = Pickle(vec![op::PROTO, 2, op::EMPTY_DICT]);
    p.str("model");
    p.ordered_dict();
    p.0.push(op::MARK);
    for (key, (name, view)) in tensors.iter().enumerate() {
        let (storage, size) = storage_type(view.dtype()).ok_or_else(|| {
            err(format!(
                "tensor {name}: dtype {:?} has no torch storage",
                view.dtype()
            ))
        })?;
        let shape = view.shape();
        let numel: usize = shape.iter().product();
        let mut stride = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        p.str(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(op::MARK);
        p.0.push(op::MARK);
        p.str("storage");
        p.global("torch", storage);
        p.str(&key.to_string());
        p.str("cpu");
        p.int(numel as u64);
        p.0.extend([op::TUPLE, op::BINPERSID]);
        p.int(0);
        p.ints_tuple(shape);
        p.ints_tuple(&stride);
        p.0.push(op::NEWFALSE);
        p.ordered_dict();
        p.0.extend([op::TUPLE, op::REDUCE]);
        debug_assert_eq!(view.data().len(), numel * size);
    }
    p.0.extend([op::SETITEMS, op::SETITEM, op::STOP]);

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // Stored entries, data aligned to 64 bytes as torch writes them (lets torch mmap the file).
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let zerr = |e: zip::result::ZipError| err(format!("writing the archive: {e}"));
    let mut put = |name: &str, data: &[u8]| -> Result<(), ModelError> {
        zip.start_file(format!("archive/{name}"), opts)
            .map_err(zerr)?;
        zip.write_all(data).map_err(|e| err(e.to_string()))
    };
    put("data.pkl", &p.0)?;
    put("byteorder", b"little")?;
    for (key, (_, view)) in tensors.iter().enumerate() {
        put(&format!("data/{key}"), view.data())?;
    }
    put("version", b"3\n")?;
    let out = zip.finish().map_err(zerr)?.into_inner();
    crate::checkpoint::write_atomic(output, &out)?;
    Ok(tensors.len())
}
