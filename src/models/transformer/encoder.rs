//! The pre-norm encoder: [`Layer`]s run as a stack ([`Encoder`]), a group of sequences per
//! thread.

use rayon::prelude::*;

use super::attention::attend;
use super::dense::{Activation, Dense};
use super::norm::Norm;

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
        let mlp = self
            .layers
            .iter()
            .map(|l| l.fc1.outputs())
            .max()
            .unwrap_or(0);
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
        let hidden = &mut hidden[..rows * l.fc1.outputs()];
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
