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
//!
//! The rooms: `matmul` (strided products and their checks), `skinny` (the
//! few-row dot-product path), `dense` ([`Dense`], [`Activation`]), `norm` ([`Norm`],
//! [`add_norm`]), `attention` ([`attend`]), `encoder` ([`Layer`], [`Encoder`]) and `patch`
//! ([`PatchEmbedding`]).

mod attention;
mod dense;
mod encoder;
mod matmul;
mod norm;
mod patch;
mod skinny;

pub use attention::attend;
pub use dense::{Activation, Dense};
pub use encoder::{Encoder, Layer};
pub use matmul::{matmul, View};
pub use norm::{add_norm, Norm};
pub use patch::PatchEmbedding;
