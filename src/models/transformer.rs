//! A pre-norm transformer encoder (CLIP's towers, BLIP's image encoder) on plain f32 buffers,
//! written for CPU throughput, and its parts ([`Dense`], [`Norm`], [`matmul`], [`attend`],
//! [`add_norm`], [`PatchEmbedding`]), which BLIP's text decoder and the post-norm BERT
//! encoder ([`crate::models::bert`]) reuse.
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
//!   every thread inside each matrix product instead, and so do the sequences left over when
//!   the batch is not a multiple of the threads;
//! - a product with a handful of rows (a decoding step) runs as dot products that read each
//!   weight once, the memory-bound case where `gemm`'s packing costs as much as the arithmetic.

use candle_core::Tensor;
use candle_nn::VarBuilder;
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

    /// Whether every element lies inside `data` (false where the arithmetic would overflow).
    fn in_bounds(&self) -> bool {
        reach(self.rows, self.cols, self.rs, self.cs).is_some_and(|r| r <= self.data.len())
    }
}

/// One past the largest index a `rows x cols` matrix with strides `rs`, `cs` touches, or
/// `None` when that does not fit a `usize`.
fn reach(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    let last_row = (rows - 1).checked_mul(rs)?;
    let last_col = (cols - 1).checked_mul(cs)?;
    last_row.checked_add(last_col)?.checked_add(1)
}

/// Products whose `a` has at most this many rows (a decoder step's tokens, an attention
/// query) run as dot products ([`simd::dot_products`]) when both operands allow it.
const SKINNY_ROWS: usize = 8;

/// `dst = a b`, or `dst += a b` with `accumulate`, dst being `a.rows x b.cols` with row
/// stride `dst_rs` (columns adjacent), run on `threads` threads of rayon's pool: by `gemm`,
/// or, when `a` has few rows (at most `SKINNY_ROWS`, 8) and both the rows of `a` and the
/// columns of `b` are contiguous, as dot products that read `b` once.
///
/// # Panics
/// When the shapes disagree, an operand or the destination reaches outside its slice (or its
/// extent overflows a `usize`), the destination's rows overlap (`dst_rs < b.cols` with more
/// than one row), or a stride does not fit an `isize`: checked before any element is touched.
pub fn matmul(dst: &mut [f32], dst_rs: usize, a: View, b: View, accumulate: bool, threads: usize) {
    check_product(dst.len(), dst_rs, &a, &b);
    if a.rows <= SKINNY_ROWS && a.cs == 1 && b.rs == 1 {
        skinny_matmul(dst, dst_rs, a, b, accumulate, threads);
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: every element of the three matrices lies inside its slice and every stride fits
    // an `isize` (`check_product`); the destination's rows do not overlap, so each element is
    // written by one thread; `dst` is borrowed mutably, so it cannot overlap the operands.
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

/// The checks [`matmul`] makes before its unsafe product (see its `# Panics`).
fn check_product(dst_len: usize, dst_rs: usize, a: &View, b: &View) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: operand out of bounds"
    );
    assert!(
        reach(a.rows, b.cols, dst_rs, 1).is_some_and(|r| r <= dst_len),
        "matmul: destination out of bounds"
    );
    assert!(
        a.rows <= 1 || dst_rs >= b.cols,
        "matmul: destination rows overlap (row stride {dst_rs} < width {})",
        b.cols
    );
    let fits = |s: usize| isize::try_from(s).is_ok();
    assert!(
        [dst_rs, a.rs, a.cs, b.rs, b.cs].into_iter().all(fits),
        "matmul: stride over isize::MAX"
    );
}

/// [`matmul`] for an `a` of few, contiguous rows and a `b` of contiguous columns (a
/// weight matrix in PyTorch's layout read as `W^T`, keys read as `K^T`): the columns of `b`
/// are split between the threads, each computes its columns' dot products with every row of
/// `a` ([`simd::dot_products`]), and the results are added into `dst` (operands checked by
/// [`matmul`]).
fn skinny_matmul(
    dst: &mut [f32],
    dst_rs: usize,
    a: View,
    b: View,
    accumulate: bool,
    threads: usize,
) {
    let (rows, cols) = (a.rows, b.cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let per_task = cols.div_ceil(threads.max(1));
    // Column-major results: `products[j * rows + i]` is `dst[i][j]`.
    let mut products = vec![0f32; rows * cols];
    let task = |(t, out): (usize, &mut [f32])| {
        let w = &b.data[t * per_task * b.cs..];
        simd::dot_products(a.data, a.rs, w, b.cs, a.cols, rows, out);
    };
    if threads > 1 {
        products
            .par_chunks_mut(per_task * rows)
            .enumerate()
            .for_each(task);
    } else {
        task((0, &mut products));
    }
    for i in 0..rows {
        // In bounds: the destination's reach was checked by `matmul`.
        let row = &mut dst[i * dst_rs..][..cols];
        let column = products.iter().skip(i).step_by(rows);
        for (d, &p) in row.iter_mut().zip(column) {
            *d = if accumulate { *d + p } else { p };
        }
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
        let threads = rayon::current_num_threads();
        // Whole rounds of one group per thread, then the sequences left over (fewer than the
        // threads) with the threads shared among them, so no thread idles while one finishes
        // an extra sequence.
        let rounds = if sequences > threads {
            sequences - sequences % threads
        } else {
            0
        };
        let (whole, rest) = x.split_at_mut(rounds * seq_size);
        self.forward_groups(whole, len, causal, first_only, threads);
        self.forward_groups(rest, len, causal, first_only, threads);
    }

    /// [`Encoder::forward`] with the sequences split into at most `threads` groups, one per
    /// thread, each group with its share of the threads inside its products.
    fn forward_groups(
        &self,
        x: &mut [f32],
        len: usize,
        causal: bool,
        first_only: bool,
        threads: usize,
    ) {
        let seq_size = len * self.width;
        let sequences = x.len() / seq_size;
        if sequences == 0 {
            return;
        }
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
            self.attention(&mut s, len, queries, causal, threads);
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
    /// `queries` tokens of each sequence, with `threads` in each product.
    fn attention(&self, s: &mut Scratch, len: usize, queries: usize, causal: bool, threads: usize) {
        let w = self.width;
        let sequences = s.qkv.len() / (len * 3 * w);
        for seq in 0..sequences {
            attend(
                &s.qkv[seq * len * 3 * w..(seq + 1) * len * 3 * w],
                &mut s.context[seq * len * w..][..queries * w],
                &mut s.scores,
                self.heads,
                queries,
                causal,
                threads,
            );
        }
    }
}

/// Multi-head attention of one sequence: `qkv` holds its tokens' fused projections
/// ([`Dense::fused_qkv`]), a row of `3 width` each (queries, keys, values, head after head,
/// the scale already in the queries); the first `queries` tokens attend to every token (with
/// `causal`, to themselves and the tokens before them only), each head's output written
/// straight into its columns of `context` (`queries` rows of `width`). Operands are read in
/// place through strides; `scores` (at least `queries x tokens`) is the scratch for one
/// head's scores; `threads` run inside each product.
pub fn attend(
    qkv: &[f32],
    context: &mut [f32],
    scores: &mut [f32],
    heads: usize,
    queries: usize,
    causal: bool,
    threads: usize,
) {
    let w = context.len() / queries.max(1);
    let len = qkv.len() / (3 * w);
    let hd = w / heads;
    let scores = &mut scores[..queries * len];
    for h in 0..heads {
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
        matmul(scores, len, q, keys_t, false, threads);
        simd::softmax_rows(scores, len, causal);
        let values = View {
            data: part(2 * w),
            rows: len,
            cols: hd,
            rs: 3 * w,
            cs: 1,
        };
        let probs = View::rows(scores, queries, len);
        matmul(&mut context[h * hd..], w, probs, values, false, threads);
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

/// A ViT's input tokens: the class embedding, then each patch of the image projected by the
/// stride-`patch` convolution (one product over the flattened patches), plus the position
/// embeddings.
pub struct PatchEmbedding {
    projection: Dense,
    class: Vec<f32>,
    positions: Vec<f32>,
    channels: usize,
    size: usize,
    patch: usize,
}

impl PatchEmbedding {
    /// From the convolution's weight `(width, channels, patch, patch)` and optional bias, the
    /// class embedding (`width` values) and the position embeddings (`1 + (size / patch)^2`
    /// rows of `width`), for square images of side `size`.
    pub fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        class: &Tensor,
        positions: &Tensor,
        size: usize,
    ) -> candle_core::Result<Self> {
        let (width, channels, patch, _) = weight.dims4()?;
        let grid = size / patch;
        let positions = positions.flatten_all()?.to_vec1()?;
        if positions.len() != (grid * grid + 1) * width {
            candle_core::bail!("position embeddings do not fit {grid}x{grid} patches");
        }
        Ok(Self {
            projection: Dense::new(weight, bias)?,
            class: class.flatten_all()?.to_vec1()?,
            positions,
            channels,
            size,
            patch,
        })
    }

    /// Tokens per image: the class token and the patches.
    pub fn tokens(&self) -> usize {
        (self.size / self.patch).pow(2) + 1
    }

    /// The tokens of images `(N, channels, size, size)` (flattened, row-major):
    /// `(N * tokens, width)` row-major.
    pub fn forward(&self, pixels: &[f32]) -> Vec<f32> {
        let (c, s, p) = (self.channels, self.size, self.patch);
        let grid = s / p;
        let patches = grid * grid;
        let d = self.projection.outputs();
        let n = pixels.len() / (c * s * s);
        // A row per patch, in the kernel's (channel, dy, dx) order.
        let patch_size = c * p * p;
        let mut columns = vec![0f32; n * patches * patch_size];
        for (image, rows) in pixels
            .chunks_exact(c * s * s)
            .zip(columns.chunks_exact_mut(patches * patch_size))
        {
            for (k, row) in rows.chunks_exact_mut(patch_size).enumerate() {
                let (y, x) = (k / grid * p, k % grid * p);
                for (i, dst) in row.chunks_exact_mut(p).enumerate() {
                    let (ch, dy) = (i / p, i % p);
                    let src = ch * s * s + (y + dy) * s + x;
                    dst.copy_from_slice(&image[src..src + p]);
                }
            }
        }
        let mut embedded = vec![0f32; n * patches * d];
        self.projection
            .forward(&columns, &mut embedded, false, rayon::current_num_threads());
        let len = patches + 1;
        let mut tokens = vec![0f32; n * len * d];
        for (seq, patches) in tokens
            .chunks_exact_mut(len * d)
            .zip(embedded.chunks_exact(patches * d))
        {
            seq[..d].copy_from_slice(&self.class);
            seq[d..].copy_from_slice(patches);
            simd::add_rows(seq, &self.positions);
        }
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dot-product path agrees with `gemm` on a strided product, accumulating or not.
    #[test]
    fn skinny_products_match_gemm() {
        let (rows, depth, cols) = (3, 40, 70);
        let a: Vec<f32> = (0..rows * 50)
            .map(|i| (i % 11) as f32 / 3.0 - 1.5)
            .collect();
        let b: Vec<f32> = (0..cols * 45).map(|i| (i % 7) as f32 / 2.0 - 1.0).collect();
        let a = View {
            data: &a,
            rows,
            cols: depth,
            rs: 50,
            cs: 1,
        };
        let b = View {
            data: &b,
            rows: depth,
            cols,
            rs: 1,
            cs: 45,
        };
        // The same product with `a` seen as 9 rows (its 3 rows repeated), past SKINNY_ROWS.
        let tall: Vec<f32> = (0..9)
            .flat_map(|i| a.data[(i % 3) * 50..][..depth].to_vec())
            .collect();
        let mut want = vec![1f32; 9 * cols];
        matmul(&mut want, cols, View::rows(&tall, 9, depth), b, true, 1);
        for threads in [1, 2] {
            for accumulate in [false, true] {
                let mut got = vec![1f32; rows * (cols + 2)];
                matmul(&mut got, cols + 2, a, b, accumulate, threads);
                for i in 0..rows {
                    for j in 0..cols {
                        let w = want[i * cols + j] - if accumulate { 0.0 } else { 1.0 };
                        assert!((got[i * (cols + 2) + j] - w).abs() < 1e-3);
                    }
                }
            }
        }
    }

    /// Strides whose bounds arithmetic would wrap around reach far outside the slice; a
    /// wrapped sum must not pass for a small one.
    #[test]
    fn wrapping_strides_are_out_of_bounds() {
        let data = [0f32; 4];
        let tall = View {
            data: &data,
            rows: 2,
            cols: 1,
            rs: usize::MAX,
            cs: 1,
        };
        assert!(!tall.in_bounds());
        let wide = View {
            data: &data,
            rows: 1,
            cols: 3,
            rs: 1,
            cs: usize::MAX / 2 + 1,
        };
        assert!(!wide.in_bounds());
        assert!(View::rows(&data, 2, 2).in_bounds());
    }

    /// Operands of a `gemm` product, `rows x depth` times `depth x cols`, all ones.
    fn ones(rows: usize, depth: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        (vec![1.0; rows * depth], vec![1.0; depth * cols])
    }

    /// A destination row stride below the width makes rows overlap (written from several
    /// threads at once, a data race): refused.
    #[test]
    #[should_panic(expected = "matmul: destination rows overlap")]
    fn overlapping_destination_rows_are_refused() {
        let (a, b) = ones(16, 2, 4);
        let mut dst = vec![0f32; 64];
        matmul(
            &mut dst,
            1,
            View::rows(&a, 16, 2),
            View::rows(&b, 2, 4),
            false,
            1,
        );
    }

    /// The same on the dot-product path (few rows, `b` read as `W^T`).
    #[test]
    #[should_panic(expected = "matmul: destination rows overlap")]
    fn overlapping_destination_rows_are_refused_for_skinny_products() {
        let (a, b) = ones(2, 2, 4);
        let b = View {
            data: &b,
            rows: 2,
            cols: 4,
            rs: 1,
            cs: 2,
        };
        let mut dst = vec![0f32; 8];
        matmul(&mut dst, 3, View::rows(&a, 2, 2), b, false, 2);
    }

    /// An operand whose row stride wraps around (it would be read at a negative offset).
    #[test]
    #[should_panic(expected = "matmul: operand out of bounds")]
    fn a_wrapping_operand_is_refused() {
        let (a, b) = ones(2, 1, 1);
        let a = View {
            data: &a,
            rows: 2,
            cols: 1,
            rs: usize::MAX,
            cs: 2,
        };
        let mut dst = vec![0f32; 2];
        matmul(&mut dst, 1, a, View::rows(&b, 1, 1), false, 1);
    }

    /// A destination whose row stride wraps around (row 1 would be written before row 0).
    #[test]
    #[should_panic(expected = "matmul: destination out of bounds")]
    fn a_wrapping_destination_is_refused() {
        let (a, b) = ones(16, 1, 1);
        let mut dst = vec![0f32; 16];
        matmul(
            &mut dst,
            usize::MAX,
            View::rows(&a, 16, 1),
            View::rows(&b, 1, 1),
            false,
            1,
        );
    }

    /// A stride that does not fit `gemm`'s signed strides, even where only one row exists.
    #[test]
    #[should_panic(expected = "matmul: stride")]
    fn a_stride_beyond_isize_is_refused() {
        let (a, b) = ones(1, 1, 1);
        let a = View {
            data: &a,
            rows: 1,
            cols: 1,
            rs: usize::MAX,
            cs: 2,
        };
        let mut dst = vec![0f32; 1];
        matmul(&mut dst, 1, a, View::rows(&b, 1, 1), false, 1);
    }

    /// A destination too short for its rows.
    #[test]
    #[should_panic(expected = "matmul: destination out of bounds")]
    fn a_short_destination_is_refused() {
        let (a, b) = ones(16, 2, 4);
        let mut dst = vec![0f32; 63];
        matmul(
            &mut dst,
            4,
            View::rows(&a, 16, 2),
            View::rows(&b, 2, 4),
            false,
            2,
        );
    }
}
