//! BLIP's BERT-style text decoder with its language-model head, on plain buffers: post-norm
//! layers of causal self-attention, cross-attention to the image tokens and an MLP.

use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::cache::DecoderCache;
use super::config::TextConfig;
use crate::models::simd;
use crate::models::transformer::{add_norm, matmul, Activation, Dense, Norm, View};

/// One post-norm decoder layer: causal self-attention, cross-attention to the image, MLP,
/// each followed by BERT's `x = norm(x + dense(...))`.
struct TextLayer {
    /// Self-attention query, key and value projections, the scale folded into the queries.
    self_qkv: Dense,
    self_out: Dense,
    self_norm: Norm,
    /// Cross-attention queries, the scale folded in.
    cross_query: Dense,
    /// Cross-attention keys and values of the image tokens, side by side.
    cross_kv: Dense,
    cross_out: Dense,
    cross_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

impl TextLayer {
    fn load(
        vb: &VarBuilder,
        width: usize,
        image_width: usize,
        mlp: usize,
        scale: f64,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let projection = |vb: &VarBuilder, inputs: usize| -> candle_core::Result<_> {
            Ok((vb.get((width, inputs), "weight")?, vb.get(width, "bias")?))
        };
        let a = vb.pp("attention");
        let s = a.pp("self");
        let (q, k, v) = (
            projection(&s.pp("query"), width)?,
            projection(&s.pp("key"), width)?,
            projection(&s.pp("value"), width)?,
        );
        let c = vb.pp("crossattention");
        let cs = c.pp("self");
        let (ck, cv) = (
            projection(&cs.pp("key"), image_width)?,
            projection(&cs.pp("value"), image_width)?,
        );
        let (cq_weight, cq_bias) = projection(&cs.pp("query"), width)?;
        Ok(Self {
            self_qkv: Dense::fused_qkv([(&q.0, &q.1), (&k.0, &k.1), (&v.0, &v.1)], scale)?,
            self_out: Dense::load(&a.pp("output").pp("dense"), width, width, true)?,
            self_norm: Norm::load(&a.pp("output").pp("LayerNorm"), width, eps)?,
            cross_query: Dense::fused(&[(&cq_weight, &cq_bias, scale)])?,
            cross_kv: Dense::fused(&[(&ck.0, &ck.1, 1.0), (&cv.0, &cv.1, 1.0)])?,
            cross_out: Dense::load(&c.pp("output").pp("dense"), width, width, true)?,
            cross_norm: Norm::load(&c.pp("output").pp("LayerNorm"), width, eps)?,
            intermediate: Dense::load(&vb.pp("intermediate").pp("dense"), width, mlp, true)?,
            output: Dense::load(&vb.pp("output").pp("dense"), mlp, width, true)?,
            output_norm: Norm::load(&vb.pp("output").pp("LayerNorm"), width, eps)?,
        })
    }
}

/// The BERT-style text decoder with its language-model head, on plain buffers.
pub(super) struct TextDecoder {
    /// The word embeddings, `(vocab, width)` row-major; `None` when the head is tied to them
    /// (its weight rows are the embeddings).
    word_embeddings: Option<Vec<f32>>,
    /// Position embeddings, `(positions, width)` row-major.
    positions: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<TextLayer>,
    head_transform: Dense,
    head_norm: Norm,
    /// The output projection to the vocabulary, with its bias.
    pub(super) head: Dense,
    heads: usize,
    width: usize,
    act: Activation,
}

/// Scratch buffers of one decoder call, reused from layer to layer.
struct DecoderScratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    hidden: Vec<f32>,
}

impl TextDecoder {
    pub(super) fn load(
        vb: VarBuilder,
        c: &TextConfig,
        image_width: usize,
        tied: bool,
        act: Activation,
    ) -> candle_core::Result<Self> {
        let (w, eps) = (c.hidden_size, c.layer_norm_eps);
        let scale = ((w / c.num_attention_heads) as f64).powf(-0.5);
        let bert = vb.pp("bert");
        let e = bert.pp("embeddings");
        let word_embeddings = e.get((c.vocab_size, w), "word_embeddings.weight")?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = bert.pp("encoder").pp("layer").pp(i.to_string());
                TextLayer::load(&l, w, image_width, c.intermediate_size, scale, eps)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let p = vb.pp("cls").pp("predictions");
        let untied = !tied && p.contains_tensor("decoder.weight");
        let head_weight = if untied {
            p.get((c.vocab_size, w), "decoder.weight")?
        } else {
            word_embeddings.clone()
        };
        let head_bias = if p.contains_tensor("bias") {
            p.get(c.vocab_size, "bias")?
        } else {
            p.get(c.vocab_size, "decoder.bias")?
        };
        Ok(Self {
            word_embeddings: if untied {
                Some(word_embeddings.flatten_all()?.to_vec1()?)
            } else {
                None
            },
            positions: e
                .get((c.max_position_embeddings, w), "position_embeddings.weight")?
                .flatten_all()?
                .to_vec1()?,
            embed_norm: Norm::load(&e.pp("LayerNorm"), w, eps)?,
            layers,
            head_transform: Dense::load(&p.pp("transform").pp("dense"), w, w, true)?,
            head_norm: Norm::load(&p.pp("transform").pp("LayerNorm"), w, eps)?,
            head: Dense::new(&head_weight, Some(&head_bias))?,
            heads: c.num_attention_heads,
            width: w,
            act,
        })
    }

    /// The embedding of token `id`.
    fn embedding(&self, id: u32) -> &[f32] {
        let id = id as usize;
        match &self.word_embeddings {
            Some(e) => &e[id * self.width..(id + 1) * self.width],
            None => self.head.weight_row(id),
        }
    }

    /// A fresh cache for `image_embeds`, `images` images of `(tokens, image width)` row-major,
    /// each image decoded as `group` rows.
    pub(super) fn cache(&self, image_embeds: &[f32], images: usize, group: usize) -> DecoderCache {
        let threads = rayon::current_num_threads();
        let image = self
            .layers
            .iter()
            .map(|l| {
                let rows = image_embeds.len() / l.cross_kv.inputs();
                let mut kv = vec![0f32; rows * l.cross_kv.outputs()];
                l.cross_kv.forward(image_embeds, &mut kv, false, threads);
                self.split_image_heads(&kv, rows / images)
            })
            .collect();
        DecoderCache {
            past: vec![vec![Vec::new(); self.layers.len()]; images * group],
            image,
            len: 0,
            group,
        }
    }

    /// Image keys and values `(images, tokens, 2 width)` (keys, then values, head after
    /// head) -> `(images, 2, heads, tokens, head)`, the layout of [`DecoderCache::image`].
    fn split_image_heads(&self, kv: &[f32], tokens: usize) -> Vec<f32> {
        let hd = self.width / self.heads;
        let mut out = Vec::with_capacity(kv.len());
        for image in kv.chunks_exact(tokens * 2 * self.width) {
            for part in 0..2 * self.heads {
                for token in image.chunks_exact(2 * self.width) {
                    out.extend_from_slice(&token[part * hd..(part + 1) * hd]);
                }
            }
        }
        out
    }

    /// Runs `ids`, `seq` new tokens for each row of `cache`, after what `cache` holds:
    /// `(rows * seq, vocab)` logits, row-major.
    pub(super) fn forward(&self, ids: &[u32], seq: usize, cache: &mut DecoderCache) -> Vec<f32> {
        let w = self.width;
        let n = ids.len();
        let threads = rayon::current_num_threads();
        let mut x = vec![0f32; n * w];
        for (i, (row, &id)) in x.chunks_exact_mut(w).zip(ids).enumerate() {
            let position = cache.len + i % seq;
            let position = &self.positions[position * w..(position + 1) * w];
            for ((v, &e), &p) in row.iter_mut().zip(self.embedding(id)).zip(position) {
                *v = e + p;
            }
        }
        let mlp = self.layers.iter().map(|l| l.intermediate.outputs());
        let mut s = DecoderScratch {
            normed: vec![0f32; n * w],
            qkv: vec![0f32; n * 3 * w],
            context: vec![0f32; n * w],
            hidden: vec![0f32; n * mlp.max().unwrap_or(0)],
        };
        self.embed_norm.forward(&x, &mut s.normed);
        std::mem::swap(&mut x, &mut s.normed);
        for (i, l) in self.layers.iter().enumerate() {
            l.self_qkv.forward(&x, &mut s.qkv, false, threads);
            self.self_attention(&mut s, i, seq, cache);
            add_norm(&l.self_out, &l.self_norm, &s.context, &mut x, &mut s.normed);
            l.cross_query.forward(&x, &mut s.qkv, false, threads);
            self.cross_attention(&mut s, &cache.image[i], seq, cache.group);
            add_norm(
                &l.cross_out,
                &l.cross_norm,
                &s.context,
                &mut x,
                &mut s.normed,
            );
            let hidden = &mut s.hidden[..n * l.intermediate.outputs()];
            l.intermediate.forward(&x, hidden, false, threads);
            self.act.apply(hidden);
            add_norm(&l.output, &l.output_norm, hidden, &mut x, &mut s.normed);
        }
        cache.len += seq;
        self.head_transform
            .forward(&x, &mut s.context, false, threads);
        self.act.apply(&mut s.context);
        self.head_norm.forward(&s.context, &mut x);
        let mut logits = vec![0f32; n * self.head.outputs()];
        self.head.forward(&x, &mut logits, false, threads);
        logits
    }

    /// Causal self-attention of layer `layer`: appends the new keys and values in `s.qkv`
    /// (`seq` tokens per row) to the cache, then attends from the new queries to every cached
    /// token up to their own, into `s.context`. Rows run in parallel.
    fn self_attention(
        &self,
        s: &mut DecoderScratch,
        layer: usize,
        seq: usize,
        cache: &mut DecoderCache,
    ) {
        let w = self.width;
        let hd = w / self.heads;
        let past = cache.len;
        let total = past + seq;
        s.context
            .par_chunks_mut(seq * w)
            .zip(s.qkv.par_chunks(seq * 3 * w))
            .zip(cache.past.par_iter_mut())
            .for_each(|((context, qkv), row_cache)| {
                let kv = &mut row_cache[layer];
                for token in qkv.chunks_exact(3 * w) {
                    kv.extend_from_slice(&token[w..]);
                }
                let mut scores = vec![0f32; seq * total];
                for h in 0..self.heads {
                    let queries = View {
                        data: &qkv[h * hd..],
                        rows: seq,
                        cols: hd,
                        rs: 3 * w,
                        cs: 1,
                    };
                    let keys_t = View {
                        data: &kv[h * hd..],
                        rows: hd,
                        cols: total,
                        rs: 1,
                        cs: 2 * w,
                    };
                    matmul(&mut scores, total, queries, keys_t, false, 1);
                    for (i, row) in scores.chunks_exact_mut(total).enumerate() {
                        let (visible, future) = row.split_at_mut(past + i + 1);
                        simd::softmax_rows(visible, visible.len(), false);
                        future.fill(0.0);
                    }
                    let values = View {
                        data: &kv[w + h * hd..],
                        rows: total,
                        cols: hd,
                        rs: 2 * w,
                        cs: 1,
                    };
                    let probs = View::rows(&scores, seq, total);
                    matmul(&mut context[h * hd..], w, probs, values, false, 1);
                }
            });
    }

    /// Cross-attention from the queries in `s.qkv` (the first `width` columns of each of its
    /// rows) to the image tokens in `image_kv` ([`DecoderCache::image`] of one layer), into
    /// `s.context`; the `group * seq` query rows of an image attend to it together. The
    /// (image, head) pairs run in parallel.
    fn cross_attention(&self, s: &mut DecoderScratch, image_kv: &[f32], seq: usize, group: usize) {
        let (w, heads) = (self.width, self.heads);
        let hd = w / heads;
        let rows = group * seq;
        let n = s.context.len() / w;
        let queries = &s.qkv[..n * w];
        let images = n / rows;
        let block = image_kv.len() / (images * 2 * heads);
        let tokens = block / hd;
        // Each pair's output, `(images, heads, rows, head)`.
        let mut outputs = vec![0f32; images * heads * rows * hd];
        outputs
            .par_chunks_mut(rows * hd)
            .enumerate()
            .for_each(|(pair, out)| {
                let (image, h) = (pair / heads, pair % heads);
                let head_block =
                    |part: usize| &image_kv[((image * 2 + part) * heads + h) * block..];
                let q = View {
                    data: &queries[image * rows * w + h * hd..],
                    rows,
                    cols: hd,
                    rs: w,
                    cs: 1,
                };
                let keys_t = View {
                    data: head_block(0),
                    rows: hd,
                    cols: tokens,
                    rs: 1,
                    cs: hd,
                };
                let mut scores = vec![0f32; rows * tokens];
                matmul(&mut scores, tokens, q, keys_t, false, 1);
                simd::softmax_rows(&mut scores, tokens, false);
                let probs = View::rows(&scores, rows, tokens);
                let values = View::rows(&head_block(1)[..block], tokens, hd);
                matmul(out, hd, probs, values, false, 1);
            });
        for (pair, out) in outputs.chunks_exact(rows * hd).enumerate() {
            let (image, h) = (pair / heads, pair % heads);
            for (r, o) in out.chunks_exact(hd).enumerate() {
                let at = (image * rows + r) * w + h * hd;
                s.context[at..at + hd].copy_from_slice(o);
            }
        }
    }
}
