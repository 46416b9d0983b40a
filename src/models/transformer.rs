//! A pre-norm transformer encoder (CLIP's towers) on plain f32 buffers, written for CPU
//! throughput.
//!
//! Same arithmetic as the `transformers` layers up to float rounding. What makes it fast:
//! - the query, key and value projections are one `(width, 3 width)` product, with the
//!   attention scale folded into the query weights; weights keep PyTorch's `(out, in)` layout,
//!   read as `W^T` through strides (as fast here as a transposed copy, and loads faster);
//! - biases and residuals are fused into the products: the destination starts as the bias
//!   (or the residual plus the bias) and `gemm` accumulates into it;
//! - attention reads each head's queries, keys and values in place from the fused projection
//!   (strided operands, no transposes or copies) and writes each head's output straight into
//!   its columns of the context matrix;
//! - layer norm, softmax and the activations are the vectorised kernels of
//!   [`crate::models::simd`], one pass each;
//! - a batch is split into one group of sequences per thread of rayon's pool, each group run
//!   single-threaded from its first layer to its last: no synchronisation between operations,
//!   and each thread keeps its own activations in its cache. A single sequence runs with
//!   every thread inside each matrix product instead.

use candle_core::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::models::simd;

/// A strided matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The elements, from `(0, 0)` on.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A contiguous row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        reach(self.rows, self.cols, self.rs, self.cs) <= self.data.len()
    }
}

/// One past the largest index a `rows x cols` matrix with strides `rs`, `cs` touches.
fn reach(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst = a b`, or `dst += a b` with `accumulate`, dst being `a.rows x b.cols` with row
/// stride `dst_rs` (columns adjacent), run by `gemm` on `threads` threads of rayon's pool.
///
/// # Panics
/// When the shapes disagree or an operand reaches outside its slice.
pub fn matmul(dst: &mut [f32], dst_rs: usize, a: View, b: View, accumulate: bool, threads: usize) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: operand out of bounds"
    );
    assert!(
        reach(a.rows, b.cols, dst_rs, 1) <= dst.len(),
        "matmul: destination out of bounds"
    );
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the three matrices lie inside their slices (checked above), and `dst` is
    // borrowed mutably, so it cannot overlap the operands.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

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

    /// The query, key and value projections as one layer of `3 width` outputs (query
    /// first), the query weights and bias multiplied by `q_scale`.
    pub fn fused_qkv(
        [q, k, v]: [(&Tensor, &Tensor); 3],
        q_scale: f64,
    ) -> candle_core::Result<Self> {
        let weight = Tensor::cat(&[&(q.0 * q_scale)?, k.0, v.0], 0)?;
        let bias = Tensor::cat(&[&(q.1 * q_scale)?, k.1, v.1], 0)?;
        Self::new(&weight, Some(&bias))
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs
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

    /// Normalises each row of `x` into `out`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        simd::layer_norm(x, &mut out[..x.len()], &self.gamma, &self.beta, self.eps);
    }
}

/// The MLP activations of CLIP checkpoints.
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

    fn apply(self, x: &mut [f32]) {
        match self {
            Self::QuickGelu => simd::quick_gelu_inplace(x),
            Self::Gelu => simd::gelu_inplace(x),
            Self::GeluTanh => simd::gelu_tanh_inplace(x),
        }
    }
}

/// One pre-norm layer: `x += attention(norm1(x))`, then `x += mlp(norm2(x))`.
pub struct Layer {
    /// Before attention.
    pub norm1: Norm,
    /// Query, key and value projections ([`Dense::fused_qkv`]).
    pub qkv: Dense,
    /// Attention output projection.
    pub out: Dense,
    /// Before the MLP.
    pub norm2: Norm,
    /// MLP up projection.
    pub fc1: Dense,
    /// MLP down projection.
    pub fc2: Dense,
}

/// A stack of [`Layer`]s with their shared settings.
pub struct Encoder {
    layers: Vec<Layer>,
    width: usize,
    heads: usize,
    act: Activation,
}

/// Scratch buffers of one group of sequences, reused from layer to layer.
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
}

impl Encoder {
    /// A stack of `layers` of the given width, number of heads and MLP activation.
    pub fn new(layers: Vec<Layer>, width: usize, heads: usize, act: Activation) -> Self {
        Self {
            layers,
            width,
            heads,
            act,
        }
    }

    /// Runs `x`, sequences of `len` tokens each as `(sequences * len, width)` row-major,
    /// through every layer, in place. With `causal`, each token attends to itself and the
    /// tokens before it only. With `first_only`, only each sequence's first token is wanted
    /// (CLIP's image pooling): the last layer computes that row alone after its attention,
    /// and the other rows of `x` are left stale. Uses every thread of rayon's pool (see the
    /// module docs).
    pub fn forward(&self, x: &mut [f32], len: usize, causal: bool, first_only: bool) {
        let seq_size = len * self.width;
        let sequences = x.len() / seq_size;
        if sequences == 0 {
            return;
        }
        let threads = rayon::current_num_threads();
        let groups = threads.min(sequences);
        let per_group = sequences.div_ceil(groups);
        let inner = (threads / groups).max(1);
        x.par_chunks_mut(per_group * seq_size)
            .for_each(|group| self.forward_group(group, len, causal, first_only, inner));
    }

    /// [`Encoder::forward`] of one group of sequences, with `threads` in each product.
    fn forward_group(
        &self,
        x: &mut [f32],
        len: usize,
        causal: bool,
        first_only: bool,
        threads: usize,
    ) {
        let w = self.width;
        let rows = x.len() / w;
        let mlp = self.layers.iter().map(|l| l.fc1.outputs).max().unwrap_or(0);
        let mut s = Scratch {
            normed: vec![0.0; rows * w],
            qkv: vec![0.0; rows * 3 * w],
            context: vec![0.0; rows * w],
            hidden: vec![0.0; rows * mlp],
            scores: vec![0.0; len * len],
        };
        for (i, l) in self.layers.iter().enumerate() {
            let last = i + 1 == self.layers.len();
            let queries = if first_only && last { 1 } else { len };
            l.norm1.forward(x, &mut s.normed);
            l.qkv.forward(&s.normed, &mut s.qkv, false, threads);
            self.attention(&mut s, len, queries, causal);
            if queries == len {
                self.finish_layer(l, x, &s.context, &mut s.normed, &mut s.hidden, threads);
            } else {
                let first = |m: &[f32]| -> Vec<f32> {
                    m.chunks_exact(len * w)
                        .flat_map(|s| &s[..w])
                        .copied()
                        .collect()
                };
                let (mut tokens, context) = (first(x), first(&s.context));
                self.finish_layer(
                    l,
                    &mut tokens,
                    &context,
                    &mut s.normed,
                    &mut s.hidden,
                    threads,
                );
                for (seq, token) in x.chunks_exact_mut(len * w).zip(tokens.chunks_exact(w)) {
                    seq[..w].copy_from_slice(token);
                }
            }
        }
    }

    /// The rest of a layer after attention, for the rows of `x`:
    /// `x += out(context)`, then `x += fc2(act(fc1(norm2(x))))`.
    fn finish_layer(
        &self,
        l: &Layer,
        x: &mut [f32],
        context: &[f32],
        normed: &mut [f32],
        hidden: &mut [f32],
        threads: usize,
    ) {
        let rows = x.len() / self.width;
        l.out.forward(context, x, true, threads);
        let normed = &mut normed[..x.len()];
        l.norm2.forward(x, normed);
        let hidden = &mut hidden[..rows * l.fc1.outputs];
        l.fc1.forward(normed, hidden, false, threads);
        self.act.apply(hidden);
        l.fc2.forward(hidden, x, true, threads);
    }

    /// Multi-head attention from `s.qkv` (each row: queries, keys, values, head after
    /// head) into `s.context` (each row: the heads' outputs side by side), for the first
    /// `queries` tokens of each sequence.
    fn attention(&self, s: &mut Scratch, len: usize, queries: usize, causal: bool) {
        let w = self.width;
        let hd = w / self.heads;
        let sequences = s.qkv.len() / (len * 3 * w);
        for seq in 0..sequences {
            let qkv = &s.qkv[seq * len * 3 * w..(seq + 1) * len * 3 * w];
            for h in 0..self.heads {
                let part = |offset: usize| &qkv[offset + h * hd..];
                // scores = Q K^T: K^T is the key columns read with rows and columns swapped.
                let q = View {
                    data: part(0),
                    rows: queries,
                    cols: hd,
                    rs: 3 * w,
                    cs: 1,
                };
                let keys_t = View {
                    data: part(w),
                    rows: hd,
                    cols: len,
                    rs: 1,
                    cs: 3 * w,
                };
                let scores = &mut s.scores[..queries * len];
                matmul(scores, len, q, keys_t, false, 1);
                simd::softmax_rows(scores, len, causal);
                let values = View {
                    data: part(2 * w),
                    rows: len,
                    cols: hd,
                    rs: 3 * w,
                    cs: 1,
                };
                let out = &mut s.context[seq * len * w + h * hd..];
                matmul(out, w, View::rows(scores, queries, len), values, false, 1);
            }
        }
    }
}
