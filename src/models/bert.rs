//! A BERT encoder for sentence embedding, written for CPU throughput.
//!
//! Same weights and names as Hugging Face `BertModel` (and candle-transformers' `bert`), same
//! arithmetic up to float rounding, with three changes that matter on a CPU:
//! - the query, key and value projections run as one matrix product (one pass over the input);
//! - the exact (erf) GELU uses the branch-free, vectorised kernel of [`crate::models::simd`]
//!   instead of a scalar libm call per element, which took 14% of the time;
//! - attention scales the queries before the product (fewer multiplications).
//!
//! Reference: <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>

use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::models::simd::gelu_erf;
use crate::Result;

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// The encoder: embeddings and transformer layers, returning the last hidden states.
pub struct Bert {
    words: Embedding,
    positions: Embedding,
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
}

fn concat_linear(vb: &VarBuilder, names: [&str; 3], hidden: usize) -> candle_core::Result<Linear> {
    let mut weights = Vec::new();
    let mut biases = Vec::new();
    for name in names {
        weights.push(vb.get((hidden, hidden), &format!("{name}.weight"))?);
        biases.push(vb.get(hidden, &format!("{name}.bias"))?);
    }
    Ok(Linear::new(
        Tensor::cat(&weights, 0)?,
        Some(Tensor::cat(&biases, 0)?),
    ))
}

impl Bert {
    /// Loads a BERT checkpoint (with or without the `bert.` prefix); the activation must be
    /// the exact GELU.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if !matches!(cfg.hidden_act, HiddenAct::Gelu) {
            return Err(crate::Error::Invalid(format!(
                "unsupported activation {:?}: this encoder implements the exact GELU",
                cfg.hidden_act
            )));
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let emb = vb.pp("embeddings");
        let words = embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?;
        let positions = embedding(
            cfg.max_position_embeddings,
            h,
            emb.pp("position_embeddings"),
        )?;
        // Every input uses token type 0: its embedding is a constant row.
        let token_type = emb
            .get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
            .get(0)?;
        let embed_norm = layer_norm(h, eps, emb.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention");
            layers.push(Layer {
                qkv: concat_linear(&att.pp("self"), ["query", "key", "value"], h)?,
                attn_out: linear(h, h, att.pp("output.dense"))?,
                attn_norm: layer_norm(h, eps, att.pp("output.LayerNorm"))?,
                up: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                down: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            words,
            positions,
            token_type,
            embed_norm,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            hidden: h,
        })
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Last hidden states `(batch, len, hidden)` for token ids `(batch, len)` and a 0/1
    /// attention mask `(batch, len)` (f32).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let device = ids.device();
        let pos = Tensor::arange(0u32, l as u32, device)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&pos)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.embed_norm.forward(&x)?;
        // Additive mask: 0 where attended, the most negative float where padded.
        let bias = ((mask.ones_like()? - mask)? * f64::from(f32::MIN))?
            .to_dtype(DType::F32)?
            .reshape((b, 1, 1, l))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((b, l, 3, self.heads, self.head_dim))?
                .permute((2, 0, 3, 1, 4))?;
            let q = (qkv.get(0)? * scale)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, l, self.hidden))?;
            let attended = layer
                .attn_norm
                .forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let up = gelu_erf(&layer.up.forward(&attended)?)?;
            x = layer
                .out_norm
                .forward(&(layer.down.forward(&up)? + attended)?)?;
        }
        Ok(x)
    }
}
