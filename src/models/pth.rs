//! PyTorch's legacy (pre-1.6, non-zip) `.pth` checkpoints, read into named f32 tensors and
//! written as safetensors.
//!
//! A legacy file is five pickles followed by raw storage bytes:
//! 1. the magic number `0x1950a86a20f9469cfc6c`, 2. the protocol version `1001`,
//! 3. `sys_info` (endianness and type sizes), 4. the object itself — here a state dict, an
//!    (Ordered)dict of `torch._utils._rebuild_tensor_v2(persistent_id(('storage', type, key,
//!    location, numel)), offset, size, stride, ...)`, 5. the list of storage keys in the order
//!    their data follows; then for each key an 8-byte little-endian element count and the
//!    little-endian elements.
//!
//! The unpickler here knows only the opcodes such files use (protocols 2 to 4) and builds
//! plain values; it never imports or calls anything. Every length and index is checked against
//! the file, so a damaged or foreign file is an [`Error::Input`] naming it, never a panic.
//! Tensors may be strided views of a storage (these checkpoints have transposed weights);
//! they are gathered into contiguous row-major order. Floating-point tensors (f32, f64, f16,
//! bf16) become f32; `num_batches_tracked` counters are skipped.
//!
//! It stays one file, over the ~600 lines a room aims for, because it reads as one parser:
//! the byte reader, the pickle machine and its opcode table (`unpickle`, one `match`, kept
//! whole so every opcode is seen beside the others), then the tensor records and the storage
//! layout they point into; no part is used without the others.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// The magic number that opens a legacy checkpoint, as the little-endian bytes of its LONG1.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const PROTOCOL_VERSION: i64 = 1001;
/// Upper bound on tensor dimensions (guards the index arithmetic).
const MAX_DIMS: usize = 16;

/// A pickled value, as far as checkpoints need.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for i64 (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// `callable(*args)`, from REDUCE or NEWOBJ; never evaluated.
    Call(Box<Value>, Box<Value>),
    /// A persistent id (torch uses it for storages).
    Persistent(Box<Value>),
}

/// A cursor over the file's bytes; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> std::result::Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL name")?;
        let s = String::from_utf8(rest[..n].to_vec()).map_err(|_| "GLOBAL name is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: u64) -> std::result::Result<String, String> {
        let n = to_len(n)?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| format!("string before byte {} is not UTF-8", self.pos))
    }
}

/// A length read from the file as a usize.
fn to_len(n: u64) -> std::result::Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("length {n} too large"))
}

/// Little-endian two's complement bytes as an integer (wider ones stay bytes).
fn long_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

/// The unpickler's state. Python's memo holds references, so a container mutated after it
/// was memoized (an OrderedDict filled by SETITEMS) is seen whole by a later GET; here values
/// are cloned, so each stack slot remembers its memo id and the memo copy is refreshed when
/// the slot leaves the stack, and a GET of a slot still on the stack copies the slot.
#[derive(Default)]
struct Machine {
    stack: Vec<(Value, Option<u32>)>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

type Res<T> = std::result::Result<T, String>;

impl Machine {
    fn push(&mut self, v: Value) {
        self.stack.push((v, None));
    }

    fn release(&mut self, (v, id): (Value, Option<u32>)) -> Value {
        if let Some(id) = id {
            self.memo.insert(id, v.clone());
        }
        v
    }

    fn pop(&mut self) -> Res<Value> {
        let slot = self.stack.pop().ok_or("pickle stack underflow")?;
        Ok(self.release(slot))
    }

    /// Pops everything above the last MARK.
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let at = self.marks.pop().ok_or("pickle MARK missing")?;
        if at > self.stack.len() {
            return Err("pickle MARK beyond the stack".into());
        }
        let slots = self.stack.split_off(at);
        Ok(slots.into_iter().map(|s| self.release(s)).collect())
    }

    fn pop_n(&mut self, n: usize) -> Res<Vec<Value>> {
        let at = self
            .stack
            .len()
            .checked_sub(n)
            .ok_or("pickle stack underflow")?;
        let slots = self.stack.split_off(at);
        Ok(slots.into_iter().map(|s| self.release(s)).collect())
    }

    fn top(&mut self) -> Res<&mut Value> {
        Ok(&mut self.stack.last_mut().ok_or("pickle stack empty")?.0)
    }

    fn put(&mut self, id: u32) -> Res<()> {
        let slot = self.stack.last_mut().ok_or("memo PUT on an empty stack")?;
        slot.1 = Some(id);
        self.memo.insert(id, slot.0.clone());
        Ok(())
    }

    fn get(&mut self, id: u32) -> Res<()> {
        let live = self.stack.iter().rev().find(|s| s.1 == Some(id));
        let value = match live {
            Some(slot) => slot.0.clone(),
            None => self
                .memo
                .get(&id)
                .ok_or(format!("memo {id} unset"))?
                .clone(),
        };
        self.push(value);
        Ok(())
    }
}

fn pairs(items: Vec<Value>) -> Res<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of dict items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Reads one pickle starting at `r.pos`, leaving `r.pos` after its STOP.
fn unpickle(r: &mut Reader) -> Res<Value> {
    let mut m = Machine::default();
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.u64()?; // FRAME: only a length hint
            }
            b'.' => return m.pop(),
            b'(' => m.marks.push(m.stack.len()),
            b'N' => m.push(Value::None),
            0x88 => m.push(Value::Bool(true)),
            0x89 => m.push(Value::Bool(false)),
            b'K' => m.push(Value::Int(r.u8()? as i64)),
            b'M' => m.push(Value::Int(r.u16()? as i64)),
            b'J' => m.push(Value::Int(r.u32()? as i32 as i64)),
            0x8a => {
                let n = r.u8()? as usize;
                m.push(long_value(r.take(n)?));
            }
            0x8b => {
                let n = to_len(r.u32()? as u64)?;
                m.push(long_value(r.take(n)?));
            }
            b'G' => {
                let b = r.take(8)?;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(b);
                m.push(Value::Float(f64::from_be_bytes(bytes)));
            }
            b'X' => {
                let n = r.u32()? as u64;
                m.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = r.u8()? as u64;
                m.push(Value::Str(r.string(n)?));
            }
            0x8d => {
                let n = r.u64()?;
                m.push(Value::Str(r.string(n)?));
            }
            b'U' | b'C' => {
                let n = r.u8()? as usize;
                m.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'T' | b'B' => {
                let n = to_len(r.u32()? as u64)?;
                m.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b')' => m.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = m.pop_mark()?;
                m.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let items = m.pop_n((op - 0x84) as usize)?;
                m.push(Value::Tuple(items));
            }
            b']' => m.push(Value::List(Vec::new())),
            b'l' => {
                let items = m.pop_mark()?;
                m.push(Value::List(items));
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![m.pop()?]
                } else {
                    m.pop_mark()?
                };
                match m.top()? {
                    Value::List(list) => list.extend(items),
                    _ => return Err(format!("APPEND to a non-list at byte {at}")),
                }
            }
            b'}' => m.push(Value::Dict(Vec::new())),
            b'd' => {
                let items = m.pop_mark()?;
                m.push(Value::Dict(pairs(items)?));
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    m.pop_n(2)?
                } else {
                    m.pop_mark()?
                };
                match m.top()? {
                    Value::Dict(dict) => dict.extend(pairs(items)?),
                    _ => return Err(format!("SETITEM on a non-dict at byte {at}")),
                }
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.push(Value::Global(module, name));
            }
            0x93 => match (m.pop_n(2)?.as_slice(), at) {
                ([Value::Str(module), Value::Str(name)], _) => {
                    m.push(Value::Global(module.clone(), name.clone()))
                }
                _ => return Err(format!("STACK_GLOBAL without names at byte {at}")),
            },
            b'R' | 0x81 => {
                let args = m.pop()?;
                let func = m.pop()?;
                let value = match &func {
                    // An OrderedDict is built empty, then filled by SETITEMS.
                    Value::Global(module, name)
                        if module == "collections" && name == "OrderedDict" =>
                    {
                        Value::Dict(Vec::new())
                    }
                    _ => Value::Call(Box::new(func), Box::new(args)),
                };
                m.push(value);
            }
            b'b' => {
                // BUILD sets an object's state (an OrderedDict's `_metadata`): not needed.
                m.pop()?;
                m.top().map_err(|_| "BUILD without an object".to_string())?;
            }
            b'Q' => {
                let pid = m.pop()?;
                m.push(Value::Persistent(Box::new(pid)));
            }
            b'q' => m.put(r.u8()? as u32)?,
            b'r' => m.put(r.u32()?)?,
            0x94 => m.put(m.memo.len() as u32)?,
            b'h' => m.get(r.u8()? as u32)?,
            b'j' => m.get(r.u32()?)?,
            b'0' => {
                m.pop()?;
            }
            b'1' => {
                m.pop_mark()?;
            }
            b'2' => {
                let top = m.top()?.clone();
                m.push(top);
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {at}"
                ))
            }
        }
    }
}

/// Element type of a torch storage class.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StorageType {
    Float(DType),
    /// An integer or bool storage (only `num_batches_tracked` in these files): its size.
    Other(usize),
}

impl StorageType {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::Float(DType::F32),
            "DoubleStorage" => Self::Float(DType::F64),
            "HalfStorage" => Self::Float(DType::F16),
            "BFloat16Storage" => Self::Float(DType::BF16),
            "LongStorage" => Self::Other(8),
            "IntStorage" => Self::Other(4),
            "ShortStorage" => Self::Other(2),
            "CharStorage" | "ByteStorage" | "BoolStorage" => Self::Other(1),
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::Float(d) => d.size_in_bytes(),
            Self::Other(n) => n,
        }
    }
}

/// Where one tensor's elements are.
#[derive(Debug)]
struct TensorRef {
    name: String,
    key: String,
    kind: StorageType,
    /// Elements of the storage, as the persistent id states them.
    numel: usize,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn usize_of(v: &Value, what: &str) -> std::result::Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!(
            "{what}: expected a non-negative integer, got {other:?}"
        )),
    }
}

fn usizes(v: &Value, what: &str) -> std::result::Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) if items.len() <= MAX_DIMS => {
            items.iter().map(|x| usize_of(x, what)).collect()
        }
        other => Err(format!(
            "{what}: expected a tuple of integers, got {other:?}"
        )),
    }
}

/// Decodes `_rebuild_tensor_v2(storage, offset, size, stride, ...)` (also through
/// `_rebuild_parameter`, and the older `_rebuild_tensor`).
fn tensor_ref(name: &str, value: &Value) -> std::result::Result<TensorRef, String> {
    let Value::Call(func, args) = value else {
        return Err(format!("{name}: not a tensor ({value:?})"));
    };
    let (Value::Global(module, fname), Value::Tuple(args)) = (&**func, &**args) else {
        return Err(format!("{name}: not a tensor"));
    };
    if module == "torch._utils" && fname == "_rebuild_parameter" {
        let data = args.first().ok_or(format!("{name}: empty parameter"))?;
        return tensor_ref(name, data);
    }
    if module != "torch._utils" || !(fname == "_rebuild_tensor_v2" || fname == "_rebuild_tensor") {
        return Err(format!(
            "{name}: built by {module}.{fname}, not a plain tensor"
        ));
    }
    if args.len() < 4 {
        return Err(format!("{name}: {fname} with {} arguments", args.len()));
    }
    let Value::Persistent(pid) = &args[0] else {
        return Err(format!("{name}: storage is not a persistent id"));
    };
    let Value::Tuple(pid) = &**pid else {
        return Err(format!("{name}: storage id is not a tuple"));
    };
    let (kind, key, numel, view) = match pid.as_slice() {
        [Value::Str(tag), Value::Global(_, class), Value::Str(key), _location, numel, rest @ ..]
            if tag == "storage" =>
        {
            let kind = StorageType::from_class(class)
                .ok_or(format!("{name}: unsupported storage type {class}"))?;
            (kind, key.clone(), usize_of(numel, name)?, rest.first())
        }
        _ => return Err(format!("{name}: unrecognised storage id {pid:?}")),
    };
    let mut offset = usize_of(&args[1], name)?;
    // Legacy view_metadata: (view_key, offset into the root storage, view size).
    if let Some(Value::Tuple(view)) = view {
        match view.as_slice() {
            [Value::Str(_view_key), view_offset, _] => {
                offset += usize_of(view_offset, name)?;
            }
            _ => return Err(format!("{name}: unrecognised storage view {view:?}")),
        }
    } else if let Some(v) = view.filter(|v| **v != Value::None) {
        return Err(format!("{name}: unrecognised storage view {v:?}"));
    }
    let size = usizes(&args[2], name)?;
    let stride = usizes(&args[3], name)?;
    if size.len() != stride.len() {
        return Err(format!(
            "{name}: size {size:?} and stride {stride:?} differ in rank"
        ));
    }
    Ok(TensorRef {
        name: name.to_string(),
        key,
        kind,
        numel,
        offset,
        size,
        stride,
    })
}

/// Converts one storage's raw little-endian bytes to f32.
fn storage_to_f32(bytes: &[u8], dtype: DType) -> candle_core::Result<Vec<f32>> {
    match dtype {
        DType::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        _ => {
            let n = bytes.len() / dtype.size_in_bytes();
            Tensor::from_raw_buffer(bytes, dtype, &[n], &Device::Cpu)?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()
        }
    }
}

/// Copies a strided view into row-major order; the caller has bounds-checked it.
fn gather(src: &[f32], offset: usize, size: &[usize], stride: &[usize]) -> Vec<f32> {
    let total: usize = size.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let mut index = vec![0usize; size.len()];
    let mut pos = offset;
    for _ in 0..total {
        out.push(src[pos]);
        // Odometer increment, last dimension fastest.
        for d in (0..size.len()).rev() {
            index[d] += 1;
            pos += stride[d];
            if index[d] < size[d] {
                break;
            }
            pos -= stride[d] * size[d];
            index[d] = 0;
        }
    }
    out
}

/// The largest element index a view touches, or None when it has no elements or overflows.
fn last_index(offset: usize, size: &[usize], stride: &[usize]) -> Option<Option<usize>> {
    if size.contains(&0) {
        return Some(None);
    }
    let mut last = offset;
    for (&n, &s) in size.iter().zip(stride) {
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    Some(Some(last))
}

fn parse(data: &[u8]) -> std::result::Result<Vec<(String, Tensor)>, String> {
    if data.starts_with(b"PK\x03\x04") {
        return Err(
            "a zip-format checkpoint (torch >= 1.6); only the legacy format is read".into(),
        );
    }
    let mut r = Reader { data, pos: 0 };
    match unpickle(&mut r) {
        Ok(Value::BigInt(b)) if b == MAGIC => {}
        Ok(_) | Err(_) => return Err("not a legacy PyTorch checkpoint (no magic number)".into()),
    }
    match unpickle(&mut r)? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => return Err(format!("unsupported protocol version {other:?}")),
    }
    if let Value::Dict(info) = unpickle(&mut r)? {
        let big_endian = info
            .iter()
            .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(false));
        if big_endian {
            return Err("a big-endian checkpoint".into());
        }
    }
    let Value::Dict(entries) = unpickle(&mut r)? else {
        return Err("the checkpoint is not a state dict (a dict of tensors)".into());
    };
    let Value::List(keys) = unpickle(&mut r)? else {
        return Err("the storage key list is missing".into());
    };
    // Every tensor's view, and each storage's element type (counters included: their
    // storages are in the data too and must be skipped by size).
    let mut kinds: HashMap<String, (StorageType, usize)> = HashMap::new();
    let mut refs = Vec::new();
    for (k, v) in &entries {
        let Value::Str(name) = k else {
            return Err(format!("a state-dict key is not a string: {k:?}"));
        };
        let t = tensor_ref(name, v)?;
        if *kinds.entry(t.key.clone()).or_insert((t.kind, t.numel)) != (t.kind, t.numel) {
            return Err(format!(
                "{name}: storage {} is described twice, differently",
                t.key
            ));
        }
        if let StorageType::Other(_) = t.kind {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            return Err(format!(
                "{name}: an integer tensor; only floating point is read"
            ));
        }
        refs.push(t);
    }
    // The storages, in file order.
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    for key in &keys {
        let Value::Str(key) = key else {
            return Err(format!("a storage key is not a string: {key:?}"));
        };
        let (kind, stated) = *kinds
            .get(key.as_str())
            .ok_or(format!("storage {key} is used by no tensor"))?;
        let numel = to_len(r.u64()?)?;
        if numel != stated {
            return Err(format!(
                "storage {key}: {numel} elements, its id says {stated}"
            ));
        }
        let bytes = numel
            .checked_mul(kind.size())
            .ok_or(format!("storage {key}: {numel} elements is too many"))?;
        let raw = r
            .take(bytes)
            .map_err(|e| format!("storage {key} of {numel} elements: {e}"))?;
        if let StorageType::Float(dtype) = kind {
            let values = storage_to_f32(raw, dtype).map_err(|e| format!("storage {key}: {e}"))?;
            storages.insert(key.clone(), values);
        }
    }
    let mut out = Vec::with_capacity(refs.len());
    let mut seen = std::collections::HashSet::new();
    for t in refs {
        if !seen.insert(t.name.clone()) {
            return Err(format!("{}: appears twice", t.name));
        }
        let src = storages
            .get(&t.key)
            .ok_or(format!("{}: storage {} has no data", t.name, t.key))?;
        match last_index(t.offset, &t.size, &t.stride) {
            None => return Err(format!("{}: size and stride overflow", t.name)),
            Some(Some(last)) if last >= src.len() => {
                return Err(format!(
                "{}: size {:?} stride {:?} offset {} reach element {last} of a {}-element storage",
                t.name,
                t.size,
                t.stride,
                t.offset,
                src.len()
            ))
            }
            _ => {}
        }
        // State dicts hold plain views; an overlapping or broadcast (stride 0) view larger
        // than its storage is refused rather than expanded.
        let total = (t.size.iter()).try_fold(1usize, |acc, &n| acc.checked_mul(n));
        if total.is_none_or(|n| n > src.len()) {
            return Err(format!(
                "{}: size {:?} holds more elements than its {}-element storage",
                t.name,
                t.size,
                src.len()
            ));
        }
        let values = gather(src, t.offset, &t.size, &t.stride);
        let tensor = Tensor::from_vec(values, t.size.as_slice(), &Device::Cpu)
            .map_err(|e| format!("{}: {e}", t.name))?;
        out.push((t.name, tensor));
    }
    Ok(out)
}

/// Reads a legacy-format PyTorch state dict: every floating-point tensor as a contiguous f32
/// CPU tensor, in the file's order (`num_batches_tracked` counters are left out).
pub fn read_legacy_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&data).map_err(|detail| Error::input(path, detail))
}

/// Converts a legacy-format `.pth` state dict to a safetensors file; returns how many tensors
/// it wrote. The output depends only on the tensors (sorted by name), so converting the same
/// checkpoint always gives the same bytes and its sha256 can be registered.
pub fn pth_to_safetensors(src: &Path, dst: &Path) -> Result<usize> {
    let tensors: HashMap<String, Tensor> = read_legacy_pth(src)?.into_iter().collect();
    if tensors.is_empty() {
        return Err(Error::input(src, "the checkpoint holds no tensors"));
    }
    candle_core::safetensors::save(&tensors, dst)
        .map_err(|e| Error::input(dst, format!("writing safetensors: {e}")))?;
    Ok(tensors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes pickles by hand, opcode by opcode.
    #[derive(Default)]
    struct Pickle(Vec<u8>);

    impl Pickle {
        fn op(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        fn int(&mut self, v: u32) -> &mut Self {
            self.op(b"J").op(&v.to_le_bytes())
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.op(b"X")
                .op(&(s.len() as u32).to_le_bytes())
                .op(s.as_bytes())
        }
        fn global(&mut self, m: &str, n: &str) -> &mut Self {
            self.op(b"c")
                .op(m.as_bytes())
                .op(b"\n")
                .op(n.as_bytes())
                .op(b"\n")
        }
        fn ints(&mut self, v: &[u32]) -> &mut Self {
            self.op(b"(");
            for &x in v {
                self.int(x);
            }
            self.op(b"t")
        }
        /// `_rebuild_tensor_v2(pid(('storage', T, key, 'cpu', numel)), offset, size, stride)`.
        fn tensor(
            &mut self,
            class: &str,
            key: &str,
            numel: u32,
            off: u32,
            size: &[u32],
            stride: &[u32],
        ) -> &mut Self {
            self.global("torch._utils", "_rebuild_tensor_v2").op(b"(");
            self.op(b"(")
                .str("storage")
                .global("torch", class)
                .str(key)
                .str("cpu")
                .int(numel);
            self.op(b"tQ")
                .int(off)
                .ints(size)
                .ints(stride)
                .op(b"\x89")
                .op(b"N")
                .op(b"tR")
        }
    }

    /// A legacy file: a 2x3 f32 tensor stored transposed, a row view at an offset, an f64
    /// vector and a num_batches_tracked counter.
    fn sample() -> Vec<u8> {
        let mut p = Pickle::default();
        p.op(b"\x80\x02\x8a\x0a").op(&MAGIC).op(b".");
        p.op(b"\x80\x02").int(1001).op(b".");
        p.op(b"\x80\x02}(").str("little_endian").op(b"\x88u.");
        p.op(b"\x80\x02")
            .global("collections", "OrderedDict")
            .op(b")Rq\x00(");
        p.str("w")
            .tensor("FloatStorage", "0", 6, 0, &[2, 3], &[1, 2]);
        p.str("row").tensor("FloatStorage", "0", 6, 2, &[2], &[1]);
        p.str("d").tensor("DoubleStorage", "1", 2, 0, &[2], &[1]);
        p.str("bn.num_batches_tracked")
            .tensor("LongStorage", "2", 1, 0, &[], &[]);
        p.op(b"u}bh\x00.");
        p.op(b"\x80\x02](").str("0").str("1").str("2").op(b"e.");
        let mut out = p.0;
        out.extend_from_slice(&6u64.to_le_bytes());
        for x in [0f32, 1., 2., 3., 4., 5.] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&2u64.to_le_bytes());
        for x in [0.5f64, -1.5] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&7i64.to_le_bytes());
        out
    }

    #[test]
    fn reads_strided_views_and_skips_counters() {
        let tensors = parse(&sample()).unwrap();
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "row", "d"]);
        // Storage [0..6] seen with stride (1, 2): rows are [0, 2, 4] and [1, 3, 5].
        let w = tensors[0].1.to_vec2::<f32>().unwrap();
        assert_eq!(w, vec![vec![0., 2., 4.], vec![1., 3., 5.]]);
        assert_eq!(tensors[1].1.to_vec1::<f32>().unwrap(), vec![2., 3.]);
        assert_eq!(tensors[2].1.to_vec1::<f32>().unwrap(), vec![0.5, -1.5]);
    }

    /// A file written by `torch.save(..., _use_new_zipfile_serialization=False)` (see
    /// `scripts/efficientnet_reference.py --write-tiny-pth`), against the values torch saw.
    #[test]
    fn reads_a_file_torch_wrote() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet");
        let tensors = read_legacy_pth(&dir.join("tiny_legacy.pth")).unwrap();
        let expected: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dir.join("tiny_legacy.pth.json")).unwrap())
                .unwrap();
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "row", "h", "d", "scalar"]);
        // Any truncation or single damaged byte is an error or a different reading, never
        // a panic.
        let bytes = std::fs::read(dir.join("tiny_legacy.pth")).unwrap();
        for i in 0..bytes.len() {
            assert!(parse(&bytes[..i]).is_err(), "truncated at {i}");
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                let _ = parse(&bad);
            }
        }
        for (name, t) in &tensors {
            let want = &expected[name];
            let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
            let values: Vec<f32> = serde_json::from_value(want["values"].clone()).unwrap();
            assert_eq!(t.dims(), shape.as_slice(), "{name}");
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                values,
                "{name}"
            );
        }
    }

    #[test]
    fn conversion_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.pth");
        std::fs::write(&src, sample()).unwrap();
        let (a, b) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        );
        assert_eq!(pth_to_safetensors(&src, &a).unwrap(), 3);
        pth_to_safetensors(&src, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let back = candle_core::safetensors::load(&a, &Device::Cpu).unwrap();
        assert_eq!(back["w"].to_vec2::<f32>().unwrap()[1], vec![1., 3., 5.]);
    }

    #[test]
    fn damaged_or_foreign_files_are_errors_not_panics() {
        let good = sample();
        for cut in [0, 1, 5, 14, 40, 200, good.len() - 30, good.len() - 1] {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let err = parse(b"PK\x03\x04rest").unwrap_err();
        assert!(err.contains("zip-format"), "{err}");
        assert!(parse(b"\x80\x02K\x01.").unwrap_err().contains("magic"));
        // A stride that walks past its storage.
        let mut p = Pickle::default();
        p.op(b"\x80\x02\x8a\x0a").op(&MAGIC).op(b".");
        p.op(b"\x80\x02").int(1001).op(b".");
        p.op(b"\x80\x02}.");
        p.op(b"\x80\x02}(")
            .str("w")
            .tensor("FloatStorage", "0", 2, 0, &[2, 3], &[3, 1]);
        p.op(b"u.\x80\x02](").str("0").op(b"e.");
        let mut out = p.0;
        out.extend_from_slice(&2u64.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        let err = parse(&out).unwrap_err();
        assert!(err.contains("reach element"), "{err}");
        // Every single-byte corruption of the pickles fails cleanly or parses.
        let pickles_end = good.len() - (8 + 24 + 8 + 16 + 8 + 8);
        for i in 0..pickles_end {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let _ = parse(&bad);
        }
    }
}
