//! Dense layers ([`Dense`], `y = x W^T + b` with the bias or the residual fused into the
//! product) and the MLP [`Activation`]s.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::matmul::{matmul, View};
use crate::models::simd;

/// A dense layer `y = x W^T + b`, with `W` stored `(outputs, inputs)` row-major.
pub struct Dense {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// From a PyTorch-layout weight `(outputs, inputs)` (any trailing dimensions are
    /// flattened into the inputs, as for a convolution kernel) and an optional bias.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let weight = weight.flatten_from(1)?;
        let (outputs, inputs) = weight.dims2()?;
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1()?,
            bias: bias
                .map(|b| b.flatten_all().and_then(|b| b.to_vec1()))
                .transpose()?,
            inputs,
            outputs,
        })
    }

    /// The `weight` (`(outputs, inputs)`) and, with `bias`, the `bias` under `vb`.
    pub fn load(
        vb: &VarBuilder,
        inputs: usize,
        outputs: usize,
        bias: bool,
    ) -> candle_core::Result<Self> {
        let b = bias.then(|| vb.get(outputs, "bias")).transpose()?;
        Self::new(&vb.get((outputs, inputs), "weight")?, b.as_ref())
    }

    /// Several layers over the same inputs as one, their outputs side by side in the order
    /// given (e.g. keys then values); each part's weights and bias are multiplied by its scale.
    pub fn fused(parts: &[(&Tensor, &Tensor, f64)]) -> candle_core::Result<Self> {
        let scaled = |i: usize| -> candle_core::Result<Vec<Tensor>> {
            parts
                .iter()
                .map(|p| [p.0, p.1][i] * p.2)
                .collect::<candle_core::Result<Vec<_>>>()
        };
        let (weights, biases) = (scaled(0)?, scaled(1)?);
        Self::new(&Tensor::cat(&weights, 0)?, Some(&Tensor::cat(&biases, 0)?))
    }

    /// The query, key and value projections as one layer of `3 width` outputs (query
    /// first), the query weights and bias multiplied by `q_scale`.
    pub fn fused_qkv(
        [q, k, v]: [(&Tensor, &Tensor); 3],
        q_scale: f64,
    ) -> candle_core::Result<Self> {
        Self::fused(&[(q.0, q.1, q_scale), (k.0, k.1, 1.0), (v.0, v.1, 1.0)])
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The weights of output `i` (row `i` of `W`), e.g. a token's embedding when the layer
    /// is a language-model head tied to the word embeddings.
    pub fn weight_row(&self, i: usize) -> &[f32] {
        &self.weight[i * self.inputs..(i + 1) * self.inputs]
    }

    /// `out = x W^T + b` for `x` `(rows, inputs)`; with `residual`, `out += x W^T + b`.
    pub fn forward(&self, x: &[f32], out: &mut [f32], residual: bool, threads: usize) {
        let rows = x.len() / self.inputs;
        let out = &mut out[..rows * self.outputs];
        let accumulate = match (&self.bias, residual) {
            (Some(b), true) => {
                simd::add_rows(out, b);
                true
            }
            (Some(b), false) => {
                for row in out.chunks_exact_mut(self.outputs) {
                    row.copy_from_slice(b);
                }
                true
            }
            (None, residual) => residual,
        };
        matmul(
            out,
            self.outputs,
            View::rows(x, rows, self.inputs),
            View {
                data: &self.weight,
                rows: self.inputs,
                cols: self.outputs,
                rs: 1,
                cs: self.inputs,
            },
            accumulate,
            threads,
        );
    }
}

/// The MLP activations of CLIP and BLIP checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (OpenAI).
    QuickGelu,
    /// The exact, erf-based GELU (LAION ViT-H/14).
    Gelu,
    /// The tanh approximation of GELU.
    GeluTanh,
}

impl Activation {
    /// From a `transformers` `hidden_act` name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            _ => None,
        }
    }

    /// Applies the activation to every element of `x`, in place.
    pub fn apply(self, x: &mut [f32]) {
        match self {
            Self::QuickGelu => simd::quick_gelu_inplace(x),
            Self::Gelu => simd::gelu_inplace(x),
            Self::GeluTanh => simd::gelu_tanh_inplace(x),
        }
    }
}
