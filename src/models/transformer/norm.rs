//! Layer norm ([`Norm`]) and BERT's post-norm residual ending ([`add_norm`]).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::dense::Dense;
use crate::models::simd;

/// A layer norm over the last dimension.
pub struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// From its weight (gamma), bias (beta) and epsilon.
    pub fn new(weight: &Tensor, bias: &Tensor, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            gamma: weight.to_vec1()?,
            beta: bias.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// The `weight` and `bias` of width `width` under `vb`.
    pub fn load(vb: &VarBuilder, width: usize, eps: f64) -> candle_core::Result<Self> {
        Self::new(&vb.get(width, "weight")?, &vb.get(width, "bias")?, eps)
    }

    /// Normalises each row of `x` into `out`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        simd::layer_norm(x, &mut out[..x.len()], &self.gamma, &self.beta, self.eps);
    }
}

/// BERT's (post-norm) residual block ending: `x = norm(x + dense(input))`, with `scratch`
/// (at least as long as `x`) for the sum, the product on every thread of rayon's pool.
pub fn add_norm(
    dense: &Dense,
    norm: &Norm,
    input: &[f32],
    x: &mut Vec<f32>,
    scratch: &mut Vec<f32>,
) {
    dense.forward(input, x, true, rayon::current_num_threads());
    norm.forward(x, scratch);
    std::mem::swap(x, scratch);
}
