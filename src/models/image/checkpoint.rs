//! Reading convolution-network checkpoints by name: shape-checked lookups, batch norm folded
//! into the preceding convolution, and a final check that no tensor was left unused.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Named tensors of one checkpoint; errors name the model and the file.
pub struct Checkpoint<'a> {
    map: HashMap<String, Tensor>,
    model: &'static str,
    file: &'a Path,
    used: RefCell<HashSet<String>>,
}

impl<'a> Checkpoint<'a> {
    /// Wraps `map`, read from `file`, for the model family `model` (used in errors).
    pub fn new(map: HashMap<String, Tensor>, model: &'static str, file: &'a Path) -> Self {
        let used = RefCell::new(HashSet::new());
        Self {
            map,
            model,
            file,
            used,
        }
    }

    /// A model error about this file.
    pub fn err(&self, detail: String) -> Error {
        Error::model(self.model, format!("{}: {detail}", self.file.display()))
    }

    /// The shape of `name`, if it is there (does not count as a use).
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.map.get(name).map(|t| t.dims().to_vec())
    }

    /// Tensor `name` as f32, which must have shape `dims`.
    pub fn get(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let t = (self.map.get(name)).ok_or_else(|| self.err(format!("{name} is missing")))?;
        self.used.borrow_mut().insert(name.to_string());
        if t.dims() != dims {
            let got = t.dims();
            return Err(self.err(format!("{name} has shape {got:?}, expected {dims:?}")));
        }
        Ok(t.to_dtype(DType::F32)?)
    }

    /// Convolution `conv` (output channels first, shape `dims`) with the batch norm `bn`
    /// (`{bn}.weight`, `.bias`, `.running_mean`, `.running_var`) folded in: returns the scaled
    /// weights and the bias.
    pub fn folded(
        &self,
        conv: &str,
        dims: &[usize],
        bn: &str,
        eps: f64,
    ) -> Result<(Tensor, Tensor)> {
        let w = self.get(conv, dims)?;
        let c = dims[0];
        let p = |f: &str| self.get(&format!("{bn}.{f}"), &[c]);
        let scale = (p("weight")? / (p("running_var")? + eps)?.sqrt()?)?;
        let mut scale_shape = vec![1usize; dims.len()];
        scale_shape[0] = c;
        let w = w.broadcast_mul(&scale.reshape(scale_shape)?)?;
        let b = (p("bias")? - (p("running_mean")? * &scale)?)?;
        Ok((w, b))
    }

    /// Fails on tensors no layer used, `num_batches_tracked` counters aside: extra weights
    /// mean another architecture, which would otherwise run silently wrong.
    pub fn check_all_used(&self) -> Result<()> {
        let used = self.used.borrow();
        let mut extra: Vec<&String> = (self.map.keys())
            .filter(|k| !used.contains(*k) && !k.ends_with("num_batches_tracked"))
            .collect();
        extra.sort();
        if extra.is_empty() {
            return Ok(());
        }
        let n = extra.len();
        extra.truncate(3);
        Err(self.err(format!(
            "{n} tensors the model does not have, e.g. {extra:?}"
        )))
    }
}
