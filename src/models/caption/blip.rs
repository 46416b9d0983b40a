//! BLIP image captioning, loaded from a Hugging Face `BlipForConditionalGeneration` folder
//! (`config.json`, `model.safetensors`, `tokenizer.json`), the layout of
//! Salesforce/blip-image-captioning-base and -large.
//!
//! The model is a ViT image encoder (`vision_model.*`: patch embedding with a class token, pre-norm
//! layers with a fused `qkv` projection, a final `post_layernorm`) and a BERT-style text decoder
//! (`text_decoder.bert.*`: post-norm layers with causal self-attention and cross-attention to
//! every image token, then the `text_decoder.cls.predictions` language-model head).
//!
//! Both run on plain f32 buffers with [`crate::models::transformer`]: the image encoder is its
//! [`Encoder`] after a [`PatchEmbedding`]; the decoder uses its [`Dense`] layers (query, key and
//! value fused, the attention scale folded into the queries, biases and residuals fused into
//! the products) and the [`crate::models::simd`] kernels. A decoding step has a handful of rows
//! (one per image, or per beam), so its products are matrix-times-few-vectors, which
//! [`matmul`] runs as dot products reading each weight once. The self-attention cache keeps each
//! row's keys and values token after token, and each layer's image keys and values are
//! computed once per image (keys and values side by side) and read in place by every step.
//!
//! It is written here rather than taken from `candle_transformers::models::blip`, which does not
//! fit the checkpoints or the use:
//! - checkpoints written by current `transformers` leave out the tied output projection
//!   (`cls.predictions.decoder.weight`, the word embeddings when `tie_word_embeddings` is set,
//!   its default) and its bias (`cls.predictions.bias`), which candle's loader requires;
//! - `transformers` sizes the cross-attention keys and values by the vision width (it
//!   overwrites `text_config.encoder_hidden_size` with it); candle reads the stale field;
//! - candle's decoder keeps its key/value cache inside the model (`&mut self`), so it can be
//!   neither shared between threads nor reordered for beam search, and it recomputes the
//!   cross-attention keys and values over all image tokens at every step; here the cache is
//!   per call, the image keys and values are computed once, and beams of one image share them;
//! - its configs have no defaults, where `transformers` fills absent fields.
//!
//! Captioning is unconditional, as in CLIP Interrogator: no text prompt, the decoder starts from
//! `bos_token_id` (`[DEC]`) and stops at `sep_token_id` (`[SEP]`), as
//! `BlipForConditionalGeneration.generate` sets them. Greedy decoding and beam search follow
//! `transformers`' `generate` step for step (beam search with its default `length_penalty` 1 and
//! `early_stopping` false), so both give the same token ids.
//!
//! Images are prepared as `BlipImageProcessor` does: resized to the square input size with
//! bicubic resampling (no crop, the aspect ratio is not kept), scaled to 0..1 and normalised with
//! CLIP's mean and standard deviation.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::imageops::{self, FilterType};
use image::RgbImage;
use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::{Caption, Captioner};
use crate::models::config_defaults::n;
use crate::models::image::clip::normalize_stack;
use crate::models::simd;
use crate::models::transformer::{
    add_norm, matmul, Activation, Dense, Encoder, Layer, Norm, PatchEmbedding, View,
};
use crate::{Error, Result};

/// Images per vision forward pass (and per decoding batch) in [`Captioner::caption`].
const IMAGE_BATCH: usize = 8;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// The most likely token at every step (`transformers` `generate` with `num_beams=1`).
    Greedy,
    /// Beam search over `width` hypotheses (`num_beams=width`, `length_penalty=1`,
    /// `early_stopping=False`).
    Beam {
        /// Number of beams (at least 1; 1 is greedy).
        width: usize,
    },
}

/// Decoding settings for [`Blip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlipConfig {
    /// Greedy or beam search.
    pub decoding: Decoding,
    /// Most tokens generated after the start token, the end token included
    /// (`max_new_tokens`; CLIP Interrogator's `caption_max_length` is 32).
    pub max_tokens: usize,
    /// The end token is not allowed before this many tokens (`min_new_tokens`).
    pub min_tokens: usize,
}

impl Default for BlipConfig {
    /// CLIP Interrogator's settings: greedy, at most 32 tokens.
    fn default() -> Self {
        Self {
            decoding: Decoding::Greedy,
            max_tokens: 32,
            min_tokens: 0,
        }
    }
}

/// The part of a `transformers` `BlipConfig` (`config.json`) the captioner needs; absent fields
/// take the `transformers` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    /// The text decoder.
    pub text_config: TextConfig,
    /// The image encoder.
    pub vision_config: VisionConfig,
    /// Whether the output projection is the word-embedding matrix.
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
}

/// `text_config` of a `BlipConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Number of token ids.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Width of the decoder.
    #[serde(default = "n::<768>")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "n::<3072>")]
    pub intermediate_size: usize,
    /// Number of layers.
    #[serde(default = "n::<12>")]
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    #[serde(default = "n::<8>")]
    pub num_attention_heads: usize,
    /// Longest token sequence.
    #[serde(default = "n::<512>")]
    pub max_position_embeddings: usize,
    /// Activation of the MLP and of the head's transform.
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "d_text_eps")]
    pub layer_norm_eps: f64,
    /// The start token (`[DEC]`).
    #[serde(default = "d_bos")]
    pub bos_token_id: Option<u32>,
    /// The end token of a caption (`[SEP]`).
    #[serde(default = "d_sep")]
    pub sep_token_id: Option<u32>,
}

/// `vision_config` of a `BlipConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    /// Width of the encoder.
    #[serde(default = "n::<768>")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "n::<3072>")]
    pub intermediate_size: usize,
    /// Number of layers.
    #[serde(default = "n::<12>")]
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    #[serde(default = "n::<12>")]
    pub num_attention_heads: usize,
    /// Side of the square input.
    #[serde(default = "n::<384>")]
    pub image_size: usize,
    /// Side of a patch.
    #[serde(default = "n::<16>")]
    pub patch_size: usize,
    /// MLP activation.
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "d_vision_eps")]
    pub layer_norm_eps: f64,
}

fn yes() -> bool {
    true
}
fn d_vocab() -> usize {
    30524
}
fn d_act() -> String {
    "gelu".into()
}
fn d_text_eps() -> f64 {
    1e-12
}
fn d_vision_eps() -> f64 {
    1e-5
}
fn d_bos() -> Option<u32> {
    Some(30522)
}
fn d_sep() -> Option<u32> {
    Some(102)
}

/// The ViT image encoder on plain buffers: [`PatchEmbedding`], the pre-norm
/// [`transformer::Encoder`] and a final layer norm.
struct VisionModel {
    embeddings: PatchEmbedding,
    encoder: Encoder,
    post_norm: Norm,
    width: usize,
}

impl VisionModel {
    fn load(vb: VarBuilder, c: &VisionConfig, act: Activation) -> candle_core::Result<Self> {
        let e = vb.pp("embeddings");
        let (w, p, eps) = (c.hidden_size, c.patch_size, c.layer_norm_eps);
        let tokens = (c.image_size / p).pow(2) + 1;
        let embeddings = PatchEmbedding::new(
            &e.get((w, 3, p, p), "patch_embedding.weight")?,
            Some(&e.get(w, "patch_embedding.bias")?),
            &e.get((1, 1, w), "class_embedding")?,
            &e.get((1, tokens, w), "position_embedding")?,
            c.image_size,
        )?;
        let scale = ((w / c.num_attention_heads) as f64).powf(-0.5);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp("encoder").pp("layers").pp(i.to_string());
                let a = l.pp("self_attn");
                // `qkv` is the three projections stacked (query first): fold the attention
                // scale into its query part.
                let qkv = a.pp("qkv");
                let (weight, bias) = (qkv.get((3 * w, w), "weight")?, qkv.get(3 * w, "bias")?);
                let part = |i: usize| -> candle_core::Result<(Tensor, Tensor)> {
                    Ok((weight.narrow(0, i * w, w)?, bias.narrow(0, i * w, w)?))
                };
                let (q, k, v) = (part(0)?, part(1)?, part(2)?);
                Ok(Layer {
                    norm1: Norm::load(&l.pp("layer_norm1"), w, eps)?,
                    qkv: Dense::fused_qkv([(&q.0, &q.1), (&k.0, &k.1), (&v.0, &v.1)], scale)?,
                    out: Dense::load(&a.pp("projection"), w, w, true)?,
                    norm2: Norm::load(&l.pp("layer_norm2"), w, eps)?,
                    fc1: Dense::load(&l.pp("mlp").pp("fc1"), w, c.intermediate_size, true)?,
                    fc2: Dense::load(&l.pp("mlp").pp("fc2"), c.intermediate_size, w, true)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            encoder: Encoder::new(layers, w, c.num_attention_heads, act),
            post_norm: Norm::load(&vb.pp("post_layernorm"), w, eps)?,
            width: w,
        })
    }

    /// Images `(N, 3, S, S)`, flattened, -> `(N * (1 + (S/P)^2), width)` row-major, after the
    /// final layer norm.
    fn forward(&self, pixels: &[f32]) -> Vec<f32> {
        let mut x = self.embeddings.forward(pixels);
        self.encoder
            .forward(&mut x, self.embeddings.tokens(), false, false);
        let mut out = vec![0f32; x.len()];
        self.post_norm.forward(&x, &mut out);
        out
    }
}

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

/// Keys and values kept between decoding steps.
struct DecoderCache {
    /// Per row, per layer: the self-attention keys and values so far, a row of
    /// `2 width` per token (keys, then values).
    past: Vec<Vec<Vec<f32>>>,
    /// Per layer: the cross-attention keys and values, `(images, 2, heads, tokens, head)`
    /// row-major (keys, then values; each head's block contiguous, so a step streams it);
    /// the `group` consecutive rows of an image (its beams) share them.
    image: Vec<Vec<f32>>,
    /// Tokens seen so far (the position of the next one).
    len: usize,
    /// Rows per image.
    group: usize,
}

impl DecoderCache {
    /// Reorders (and subsets) the rows of the self-attention cache.
    fn select_rows(&mut self, rows: &[u32]) {
        self.past = rows
            .iter()
            .map(|&r| self.past[r as usize].clone())
            .collect();
    }

    /// Keeps the images at positions `keep` (in the current order), with their rows.
    fn keep_images(&mut self, keep: &[u32]) {
        let images = self.past.len() / self.group;
        for kv in &mut self.image {
            let size = kv.len() / images;
            *kv = keep
                .iter()
                .flat_map(|&i| &kv[i as usize * size..(i as usize + 1) * size])
                .copied()
                .collect();
        }
        let g = self.group as u32;
        let rows: Vec<u32> = keep.iter().flat_map(|&i| i * g..(i + 1) * g).collect();
        self.select_rows(&rows);
    }
}

/// The BERT-style text decoder with its language-model head, on plain buffers.
struct TextDecoder {
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
    head: Dense,
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
    fn load(
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
    fn cache(&self, image_embeds: &[f32], images: usize, group: usize) -> DecoderCache {
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
    fn forward(&self, ids: &[u32], seq: usize, cache: &mut DecoderCache) -> Vec<f32> {
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

/// The token ids generated for one image and their score.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The start token, then the generated tokens (the end token included when one was
    /// generated), as `transformers`' `generate` returns them.
    pub ids: Vec<u32>,
    /// Mean log-probability per generated token (the start token excluded).
    pub score: f32,
}

/// A BLIP captioning model, loaded from a `transformers` folder.
pub struct Blip {
    name: String,
    config: ModelConfig,
    options: BlipConfig,
    tokenizer: Tokenizer,
    vision: VisionModel,
    text: TextDecoder,
    bos: u32,
    sep: u32,
}

impl std::fmt::Debug for Blip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blip")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Blip {
    /// Loads `dir/config.json`, `dir/model.safetensors` and `dir/tokenizer.json` with the
    /// default decoding ([`BlipConfig::default`]); the model is named after the folder. Missing,
    /// malformed or mismatched files are a [`Error::Model`] naming the file and the problem.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, BlipConfig::default())
    }

    /// [`Blip::load`] with the given decoding settings.
    pub fn load_with(dir: &Path, options: BlipConfig) -> Result<Self> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "blip".into());
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            Error::model(
                &name,
                format!("{}: cannot read: {e}", config_path.display()),
            )
        })?;
        let config: ModelConfig = serde_json::from_str(&text).map_err(|e| {
            Error::model(
                &name,
                format!("{}: not a BLIP config: {e}", config_path.display()),
            )
        })?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            Error::model(
                &name,
                format!("{}: cannot load: {e}", tokenizer_path.display()),
            )
        })?;
        let weights = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
            .map_err(|e| Error::model(&name, format!("{}: cannot load: {e}", weights.display())))?;
        Self::from_parts(
            name,
            config,
            tensors,
            tokenizer,
            options,
            &config_path,
            &weights,
        )
    }

    /// Builds the model from its parts; `config_file` and `weights_file` name the sources in
    /// errors.
    pub fn from_parts(
        name: String,
        config: ModelConfig,
        tensors: HashMap<String, Tensor>,
        tokenizer: Tokenizer,
        options: BlipConfig,
        config_file: &Path,
        weights_file: &Path,
    ) -> Result<Self> {
        let bad_config =
            |detail: String| Error::model(&name, format!("{}: {detail}", config_file.display()));
        let (tc, vc) = (&config.text_config, &config.vision_config);
        let act = |s: &str| {
            Activation::parse(s).ok_or_else(|| bad_config(format!("unsupported hidden_act {s:?}")))
        };
        let (text_act, vision_act) = (act(&tc.hidden_act)?, act(&vc.hidden_act)?);
        for (what, width, heads) in [
            ("text", tc.hidden_size, tc.num_attention_heads),
            ("vision", vc.hidden_size, vc.num_attention_heads),
        ] {
            if width == 0 || heads == 0 || width % heads != 0 {
                return Err(bad_config(format!(
                    "{what} width {width} is not a multiple of {heads} heads"
                )));
            }
        }
        if vc.patch_size == 0 || vc.image_size == 0 || vc.image_size % vc.patch_size != 0 {
            return Err(bad_config(format!(
                "image size {} is not a multiple of patch size {}",
                vc.image_size, vc.patch_size
            )));
        }
        let token = |what: &str, id: Option<u32>| match id {
            Some(id) if (id as usize) < tc.vocab_size => Ok(id),
            Some(id) => Err(bad_config(format!(
                "{what} {id} is outside the vocabulary of {}",
                tc.vocab_size
            ))),
            None => Err(bad_config(format!("no {what}"))),
        };
        let bos = token("bos_token_id", tc.bos_token_id)?;
        let sep = token("sep_token_id", tc.sep_token_id)?;
        if tokenizer.get_vocab_size(true) > tc.vocab_size {
            return Err(bad_config(format!(
                "the tokenizer has {} tokens, the model {}",
                tokenizer.get_vocab_size(true),
                tc.vocab_size
            )));
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let build = || -> candle_core::Result<(VisionModel, TextDecoder)> {
            Ok((
                VisionModel::load(vb.pp("vision_model"), vc, vision_act)?,
                TextDecoder::load(
                    vb.pp("text_decoder"),
                    tc,
                    vc.hidden_size,
                    config.tie_word_embeddings,
                    text_act,
                )?,
            ))
        };
        let (vision, text) =
            build().map_err(|e| Error::model(&name, format!("{}: {e}", weights_file.display())))?;
        let blip = Self {
            name: name.clone(),
            config: config.clone(),
            options,
            tokenizer,
            vision,
            text,
            bos,
            sep,
        };
        blip.check_options(&options)?;
        Ok(blip)
    }

    fn check_options(&self, o: &BlipConfig) -> Result<()> {
        let positions = self.config.text_config.max_position_embeddings;
        if o.max_tokens == 0 || o.max_tokens >= positions {
            return Err(Error::Invalid(format!(
                "{}: max_tokens must be between 1 and {}, got {}",
                self.name,
                positions - 1,
                o.max_tokens
            )));
        }
        if let Decoding::Beam { width: 0 } = o.decoding {
            return Err(Error::Invalid(format!(
                "{}: beam width must be at least 1",
                self.name
            )));
        }
        Ok(())
    }

    /// The decoding settings.
    pub fn options(&self) -> &BlipConfig {
        &self.options
    }

    /// Changes the decoding settings (checked against the model: `max_tokens` must leave room
    /// for the start token in the position table).
    pub fn set_options(&mut self, options: BlipConfig) -> Result<()> {
        self.check_options(&options)?;
        self.options = options;
        Ok(())
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Side of the square the images are resized to.
    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// The tokenizer (`tokenizer.json`).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes preprocessed images, `(N, 3, S, S)` ([`preprocess`]): the image tokens the
    /// decoder attends to, `(N, 1 + (S / patch)^2, vision width)` (`vision_model`'s
    /// `last_hidden_state`).
    pub fn encode_images(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let s = self.image_size();
        let (n, c, h, w) = pixel_values.dims4()?;
        if n == 0 || c != 3 || h != s || w != s {
            return Err(Error::Invalid(format!(
                "{}: expected images of shape (N, 3, {s}, {s}), got ({n}, {c}, {h}, {w})",
                self.name
            )));
        }
        let pixels = pixel_values
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let tokens = self.vision.embeddings.tokens();
        let x = self.vision.forward(&pixels);
        Ok(Tensor::from_vec(
            x,
            (n, tokens, self.vision.width),
            &Device::Cpu,
        )?)
    }

    fn check_embeds(&self, image_embeds: &Tensor) -> Result<usize> {
        let tokens = (self.image_size() / self.config.vision_config.patch_size).pow(2) + 1;
        let width = self.config.vision_config.hidden_size;
        match image_embeds.dims() {
            &[n, t, w] if n > 0 && t == tokens && w == width => Ok(n),
            dims => Err(Error::Invalid(format!(
                "{}: expected image embeddings of shape (N, {tokens}, {width}), got {dims:?}",
                self.name
            ))),
        }
    }

    /// Decoder logits for whole token sequences (teacher forcing), one sequence per image:
    /// `(N, len, vocab)`, position `i` scoring the token after `ids[..=i]`. All sequences must
    /// have the same length.
    pub fn logits(&self, image_embeds: &Tensor, ids: &[Vec<u32>]) -> Result<Tensor> {
        let n = self.check_embeds(image_embeds)?;
        let len = ids.first().map_or(0, Vec::len);
        let vocab = self.config.text_config.vocab_size;
        if ids.len() != n || len == 0 || ids.iter().any(|s| s.len() != len) {
            return Err(Error::Invalid(format!(
                "{}: need {n} token sequences of one non-zero length",
                self.name
            )));
        }
        if len > self.config.text_config.max_position_embeddings {
            return Err(Error::Invalid(format!(
                "{}: {len} tokens do not fit in {} positions",
                self.name, self.config.text_config.max_position_embeddings
            )));
        }
        if let Some(bad) = ids.iter().flatten().find(|&&t| t as usize >= vocab) {
            return Err(Error::Invalid(format!(
                "{}: token id {bad} is outside the vocabulary of {vocab}",
                self.name
            )));
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let mut cache = self.cache(image_embeds, n, 1)?;
        let logits = self.text.forward(&flat, len, &mut cache);
        Ok(Tensor::from_vec(logits, (n, len, vocab), &Device::Cpu)?)
    }

    /// Generates token ids for each image from its embeddings ([`Blip::encode_images`]) with
    /// the model's decoding settings.
    pub fn generate(&self, image_embeds: &Tensor) -> Result<Vec<Generated>> {
        let n = self.check_embeds(image_embeds)?;
        match self.options.decoding {
            Decoding::Greedy | Decoding::Beam { width: 1 } => self.greedy(image_embeds, n),
            Decoding::Beam { width } => self.beam(image_embeds, n, width),
        }
    }

    /// One decoder step for the rows in `last` (one token each): `(rows, vocab)` logits.
    fn step(&self, last: &[u32], cache: &mut DecoderCache) -> Vec<Vec<f32>> {
        let logits = self.text.forward(last, 1, cache);
        logits
            .chunks_exact(self.text.head.outputs())
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// A decoder cache for `n` images' embeddings, `group` rows each.
    fn cache(&self, image_embeds: &Tensor, n: usize, group: usize) -> Result<DecoderCache> {
        let embeds = image_embeds.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.text.cache(&embeds, n, group))
    }

    fn greedy(&self, image_embeds: &Tensor, n: usize) -> Result<Vec<Generated>> {
        let o = self.options;
        let mut cache = self.cache(image_embeds, n, 1)?;
        let mut seqs = vec![vec![self.bos]; n];
        let mut sums = vec![0f32; n];
        // Images still decoding, in cache order.
        let mut active: Vec<usize> = (0..n).collect();
        for step in 0..o.max_tokens {
            let last: Vec<u32> = active.iter().map(|&i| seqs[i][seqs[i].len() - 1]).collect();
            let logits = self.step(&last, &mut cache);
            let mut keep = Vec::with_capacity(active.len());
            for (pos, (&image, row)) in active.iter().zip(&logits).enumerate() {
                let banned = (step < o.min_tokens).then_some(self.sep as usize);
                let token = argmax(row, banned);
                sums[image] += log_softmax_at(row, token);
                seqs[image].push(token as u32);
                if token as u32 != self.sep {
                    keep.push(pos as u32);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                cache.keep_images(&keep);
                active = keep.iter().map(|&p| active[p as usize]).collect();
            }
        }
        Ok(seqs
            .into_iter()
            .zip(sums)
            .map(|(ids, sum)| {
                let generated = (ids.len() - 1).max(1) as f32;
                Generated {
                    ids,
                    score: sum / generated,
                }
            })
            .collect())
    }

    fn beam(&self, image_embeds: &Tensor, n: usize, width: usize) -> Result<Vec<Generated>> {
        let o = self.options;
        let sep = self.sep;
        let mut cache = self.cache(image_embeds, n, width)?;
        let mut states: Vec<BeamState> = (0..n)
            .map(|_| BeamState {
                running: (0..width)
                    .map(|b| Hypothesis {
                        score: if b == 0 { 0.0 } else { -1e9 },
                        ids: vec![self.bos],
                    })
                    .collect(),
                finished: Vec::with_capacity(width),
            })
            .collect();
        let mut active: Vec<usize> = (0..n).collect();
        for step in 0..o.max_tokens {
            let last: Vec<u32> = active
                .iter()
                .flat_map(|&i| states[i].running.iter().map(|h| h.ids[h.ids.len() - 1]))
                .collect();
            let logits = self.step(&last, &mut cache);
            let at_max = step + 1 >= o.max_tokens;
            let generated = (step + 1) as f32;
            let mut rows = Vec::with_capacity(last.len());
            let mut keep = Vec::with_capacity(active.len());
            for (pos, &image) in active.iter().enumerate() {
                let state = &mut states[image];
                let beam_logits = &logits[pos * width..(pos + 1) * width];
                let candidates = top_candidates(
                    beam_logits,
                    &state.running,
                    (step < o.min_tokens).then_some(sep as usize),
                    2 * width,
                );
                let mut next = Vec::with_capacity(width);
                let mut origins = Vec::with_capacity(width);
                for (rank, &(score, beam, token)) in candidates.iter().enumerate() {
                    let ends = token as u32 == sep || at_max;
                    if ends {
                        // Only the best `width` candidates may finish, as in `transformers`.
                        if rank < width {
                            let mut ids = state.running[beam].ids.clone();
                            ids.push(token as u32);
                            state.add_finished(
                                Hypothesis {
                                    score: score / generated,
                                    ids,
                                },
                                width,
                            );
                        }
                    } else if next.len() < width {
                        let mut ids = state.running[beam].ids.clone();
                        ids.push(token as u32);
                        next.push(Hypothesis { score, ids });
                        origins.push(beam);
                    }
                }
                // Stop when nothing can continue, or when the best running beam (at its current
                // length) cannot beat the worst of a full set of finished ones.
                let worst = state
                    .finished
                    .iter()
                    .map(|h| h.score)
                    .fold(f32::INFINITY, f32::min);
                let can_improve = state.finished.len() < width
                    || next.first().is_some_and(|h| h.score / generated > worst);
                let done = at_max || next.len() < width || !can_improve;
                if !done {
                    state.running = next;
                    rows.extend(origins.iter().map(|&b| (pos * width + b) as u32));
                    keep.push(pos as u32);
                }
            }
            if keep.is_empty() {
                break;
            }
            // Reorder the rows to the surviving beams, then drop finished images.
            let mut full_rows = Vec::with_capacity(active.len() * width);
            let mut kept = keep.iter().peekable();
            let mut picked = rows.chunks(width);
            for pos in 0..active.len() as u32 {
                if kept.peek() == Some(&&pos) {
                    kept.next();
                    full_rows.extend_from_slice(picked.next().unwrap_or(&[]));
                } else {
                    let base = pos * width as u32;
                    full_rows.extend(base..base + width as u32);
                }
            }
            cache.select_rows(&full_rows);
            if keep.len() < active.len() {
                cache.keep_images(&keep);
                active = keep.iter().map(|&p| active[p as usize]).collect();
            }
        }
        Ok(states
            .into_iter()
            .map(|s| {
                let best = s.finished.into_iter().chain(s.running).reduce(|a, b| {
                    if b.score > a.score {
                        b
                    } else {
                        a
                    }
                });
                let best = best.unwrap_or(Hypothesis {
                    score: 0.0,
                    ids: vec![self.bos],
                });
                Generated {
                    ids: best.ids,
                    score: best.score,
                }
            })
            .collect())
    }

    /// The caption text of generated ids (special tokens dropped, spaces trimmed).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .tokenizer
            .decode(ids, true)
            .map_err(|e| Error::model(&self.name, format!("cannot decode tokens: {e}")))?;
        Ok(text.trim().to_string())
    }

    /// Captions preprocessed images `(N, 3, S, S)`.
    pub fn caption_pixels(&self, pixel_values: &Tensor) -> Result<Vec<Caption>> {
        let embeds = self.encode_images(pixel_values)?;
        self.generate(&embeds)?
            .into_iter()
            .map(|g| {
                Ok(Caption {
                    text: self.decode(&g.ids)?,
                    score: g.score,
                })
            })
            .collect()
    }
}

/// A hypothesis of beam search: its tokens and score (sum of log-probabilities while running,
/// divided by the generated length once finished).
#[derive(Debug, Clone)]
struct Hypothesis {
    score: f32,
    ids: Vec<u32>,
}

/// Beam search state of one image.
struct BeamState {
    running: Vec<Hypothesis>,
    finished: Vec<Hypothesis>,
}

impl BeamState {
    /// Adds a finished hypothesis, keeping the best `width`.
    fn add_finished(&mut self, h: Hypothesis, width: usize) {
        self.finished.push(h);
        // Stable: among equal scores the earlier stays ahead.
        self.finished.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.finished.truncate(width);
    }
}

/// The `k` best continuations `(summed log-prob, beam, token)` over all beams, best first
/// (ties: lower flat index first); `banned` gets no probability.
fn top_candidates(
    logits: &[Vec<f32>],
    running: &[Hypothesis],
    banned: Option<usize>,
    k: usize,
) -> Vec<(f32, usize, usize)> {
    let mut all: Vec<(f32, usize, usize)> = Vec::new();
    for (beam, (row, h)) in logits.iter().zip(running).enumerate() {
        let lse = log_sum_exp(row);
        for (token, &x) in row.iter().enumerate() {
            let logp = if Some(token) == banned {
                f32::NEG_INFINITY
            } else {
                x - lse
            };
            all.push((logp + h.score, beam, token));
        }
    }
    let k = k.min(all.len());
    let order = |a: &(f32, usize, usize), b: &(f32, usize, usize)| {
        b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2)))
    };
    if k < all.len() {
        all.select_nth_unstable_by(k, order);
        all.truncate(k);
    }
    all.sort_by(order);
    all
}

fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

/// Log-softmax of `row` at `index`.
fn log_softmax_at(row: &[f32], index: usize) -> f32 {
    row[index] - log_sum_exp(row)
}

/// Index of the first largest value, skipping `banned`.
fn argmax(row: &[f32], banned: Option<usize>) -> usize {
    let mut best = usize::MAX;
    for (i, &x) in row.iter().enumerate() {
        if Some(i) == banned {
            continue;
        }
        if best == usize::MAX || x > row[best] {
            best = i;
        }
    }
    best.min(row.len().saturating_sub(1))
}

/// Resizes to `size x size` as Pillow does: the horizontal pass first, rounded to 8 bits, then
/// the vertical pass (bicubic, Catmull-Rom as Pillow's BICUBIC, widened when shrinking). Keeping
/// the 8-bit step matters at sharp edges, where the clamped overshoot of the first pass changes
/// the second by up to 9 levels.
///
/// The passes are the `image` crate's (f32): on BLIP's test image, which is enlarged
/// vertically, they land closer to Pillow than `fast_image_resize`'s fixed point (max 1 level
/// against 2); the encoders' shrinking resizes ([`crate::models::image::preprocess`]) use the
/// faster one.
///
/// The first pass's output is `size` wide and as tall as the source, so for a narrow, tall
/// image (narrower than `size` and over 4 times `size` high, e.g. 1 x 8192) that order
/// would cost far more than the image itself: there the vertical pass goes first, which gives
/// the same square up to the rounding between the passes.
pub fn resize_square(image: &RgbImage, size: u32) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w}x{h} image to {size}"
        )));
    }
    let first = if vertical_first(w, h, size) {
        imageops::resize(image, w, size, FilterType::CatmullRom)
    } else {
        imageops::resize(image, size, h, FilterType::CatmullRom)
    };
    Ok(imageops::resize(&first, size, size, FilterType::CatmullRom))
}

/// How many times `size` a source narrower than `size` may be tall before [`resize_square`]
/// runs its vertical pass first (the first pass's output then stays under `TALL size^2` pixels).
const TALL: u64 = 4;

/// Whether [`resize_square`] resizes `w x h` vertically first: when Pillow's order (horizontal
/// first) would make an intermediate larger than both the source and `TALL size^2` pixels.
fn vertical_first(w: u32, h: u32, size: u32) -> bool {
    w < size && h as u64 > TALL * size as u64
}

/// `BlipImageProcessor`'s preprocessing: each image resized to `size x size` ([`resize_square`],
/// no crop, the aspect ratio is not kept), then normalised and stacked as CLIP's input is
/// ([`normalize_stack`]).
pub fn preprocess(images: &[RgbImage], size: usize) -> Result<Tensor> {
    normalize_stack(images, size, resize_square)
}

impl Captioner for Blip {
    fn name(&self) -> &str {
        &self.name
    }

    fn caption(&self, images: &[RgbImage]) -> Result<Vec<Caption>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(IMAGE_BATCH) {
            let x = preprocess(chunk, self.image_size())?;
            out.extend(self.caption_pixels(&x)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::image::clip::{CLIP_MEAN, CLIP_STD};

    #[test]
    fn argmax_takes_the_first_best_and_skips_the_banned() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], None), 1);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], Some(1)), 2);
        assert_eq!(argmax(&[5.0, 1.0], Some(0)), 1);
    }

    #[test]
    fn candidates_are_summed_log_probs_best_first() {
        let logits = vec![vec![0.0, 1.0, 2.0], vec![2.0, 0.0, 0.0]];
        let running = vec![
            Hypothesis {
                score: 0.0,
                ids: vec![9],
            },
            Hypothesis {
                score: -1e9,
                ids: vec![9],
            },
        ];
        let top = top_candidates(&logits, &running, None, 2);
        assert_eq!((top[0].1, top[0].2), (0, 2));
        assert_eq!((top[1].1, top[1].2), (0, 1));
        let lse = log_sum_exp(&logits[0]);
        assert!((top[0].0 - (2.0 - lse)).abs() < 1e-6);
        let banned = top_candidates(&logits, &running, Some(2), 2);
        assert_eq!((banned[0].1, banned[0].2), (0, 1));
    }

    #[test]
    fn images_are_squashed_to_the_square_and_normalised() {
        let img = RgbImage::from_pixel(40, 10, image::Rgb([255, 0, 128]));
        let t = preprocess(&[img], 8).unwrap();
        assert_eq!(t.dims(), &[1, 3, 8, 8]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((v[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((v[64] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
        assert!((v[191] - (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2]).abs() < 1e-6);
    }
}
