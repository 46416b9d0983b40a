//! Multi-head attention of one sequence, reading queries, keys and values in place from the
//! fused projection ([`attend`]).

use super::matmul::{matmul, View};
use crate::models::simd;

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
