//! A BERT encoder for sentence embedding on plain f32 buffers, written for CPU throughput.
//!
//! Same weights and names as Hugging Face `BertModel`, same
//! arithmetic up to float rounding, built from the parts of [`crate::models::transformer`]
//! (BLIP's text decoder runs the same post-norm layers):
//! - the query, key and value projections run as one matrix product, the attention scale
//!   folded into the query weights; biases and residuals are fused into the products;
//! - a batch is packed: its sequences lie end to end with no padding, so the dense layers
//!   only compute real tokens, and attention runs per sequence over its own tokens, which is
//!   exactly what the padding mask of the reference does (a masked score's weight is 0);
//! - layer norm, softmax and the exact (erf) GELU are the vectorised kernels of
//!   [`crate::models::simd`].
//!
//! The products run on every thread of rayon's current pool: a one-thread pool per worker
//! when many batches run side by side, all cores for a single batch (a search query).
//!
//! Reference: <https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py>

use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::models::transformer::{add_norm, attend, Activation, Dense, Norm};
use crate::Result;

/// The fields of a BERT checkpoint's `config.json` this encoder reads (`transformers`'
/// `BertConfig`; the others, dropout rates and the like, do not change inference).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Word-piece vocabulary size.
    pub vocab_size: usize,
    /// Width of every token's hidden state.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// The feed-forward activation; only `gelu` (the exact, erf GELU) is implemented.
    pub hidden_act: String,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Token-type (segment) table size.
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// How positions are embedded; only `absolute` is implemented.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

/// `transformers`' default position embedding.
fn absolute() -> String {
    "absolute".into()
}

/// One post-norm layer: `x = norm(x + attention(x))`, then `x = norm(x + mlp(x))`.
struct Layer {
    /// Query, key and value projections ([`Dense::fused_qkv`]).
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

impl Layer {
    /// Layer `vb` (`encoder.layer.{i}`) of hidden size `h`, MLP size `mlp`, `heads` heads.
    fn load(
        vb: &VarBuilder,
        h: usize,
        mlp: usize,
        heads: usize,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let att = vb.pp("attention");
        let s = att.pp("self");
        let projection = |name: &str| -> candle_core::Result<_> {
            let p = s.pp(name);
            Ok((p.get((h, h), "weight")?, p.get(h, "bias")?))
        };
        let (q, k, v) = (
            projection("query")?,
            projection("key")?,
            projection("value")?,
        );
        let scale = ((h / heads) as f64).powf(-0.5);
        Ok(Self {
            qkv: Dense::fused_qkv([(&q.0, &q.1), (&k.0, &k.1), (&v.0, &v.1)], scale)?,
            attn_out: Dense::load(&att.pp("output.dense"), h, h, true)?,
            attn_norm: Norm::load(&att.pp("output.LayerNorm"), h, eps)?,
            up: Dense::load(&vb.pp("intermediate.dense"), h, mlp, true)?,
            down: Dense::load(&vb.pp("output.dense"), mlp, h, true)?,
            out_norm: Norm::load(&vb.pp("output.LayerNorm"), h, eps)?,
        })
    }
}

/// The encoder: embeddings and transformer layers, returning the last hidden states.
pub struct Bert {
    /// Word embeddings, `(vocab, hidden)` row-major.
    words: Vec<f32>,
    /// Position embeddings, `(positions, hidden)` row-major.
    positions: Vec<f32>,
    /// The embedding of token type 0, which every input uses.
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

/// Scratch buffers of one batch, reused from layer to layer.
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    mlp: Vec<f32>,
    scores: Vec<f32>,
}

impl Bert {
    /// Loads a BERT checkpoint (with or without the `bert.` prefix); the activation must be
    /// the exact GELU.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if cfg.hidden_act != "gelu" {
            return Err(crate::Error::Invalid(format!(
                "unsupported activation {:?}: this encoder implements the exact GELU",
                cfg.hidden_act
            )));
        }
        if cfg.position_embedding_type != "absolute" {
            return Err(crate::Error::Invalid(format!(
                "unsupported position embedding {:?}: this encoder implements absolute positions",
                cfg.position_embedding_type
            )));
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let table = |name: &str, rows: usize| -> candle_core::Result<Vec<f32>> {
            emb.get((rows, h), name)?.flatten_all()?.to_vec1()
        };
        let token_type = table("token_type_embeddings.weight", cfg.type_vocab_size)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let (mlp, heads) = (cfg.intermediate_size, cfg.num_attention_heads);
                Layer::load(&l, h, mlp, heads, cfg.layer_norm_eps)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            words: table("word_embeddings.weight", cfg.vocab_size)?,
            positions: table("position_embeddings.weight", cfg.max_position_embeddings)?,
            token_type: token_type[..h].to_vec(),
            embed_norm: Norm::load(&emb.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            layers,
            heads: cfg.num_attention_heads,
            hidden: h,
        })
    }

    /// Last hidden states of `sequences` (token ids, each with its full attention mask),
    /// packed: `(total tokens, hidden)` row-major, the sequences' rows end to end in order.
    pub fn forward(&self, sequences: &[&[u32]]) -> Result<Vec<f32>> {
        let lens: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        let mut x = self.embed(sequences)?;
        let rows = x.len() / self.hidden;
        let h = self.hidden;
        let mlp = self.layers.iter().map(|l| l.up.outputs()).max();
        let longest = lens.iter().copied().max().unwrap_or(0);
        let mut s = Scratch {
            normed: vec![0.0; rows * h],
            qkv: vec![0.0; rows * 3 * h],
            context: vec![0.0; rows * h],
            mlp: vec![0.0; rows * mlp.unwrap_or(0)],
            scores: vec![0.0; longest * longest],
        };
        self.embed_norm.forward(&x, &mut s.normed);
        std::mem::swap(&mut x, &mut s.normed);
        for layer in &self.layers {
            self.layer(layer, &mut x, &mut s, &lens);
        }
        Ok(x)
    }

    /// The packed rows `word + position + token type` of `sequences`, before the norm.
    fn embed(&self, sequences: &[&[u32]]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let total: usize = sequences.iter().map(|s| s.len()).sum();
        let mut x = Vec::with_capacity(total * h);
        for ids in sequences {
            if ids.len() * h > self.positions.len() {
                return Err(crate::Error::Invalid(format!(
                    "{} tokens exceed BERT's position embeddings",
                    ids.len()
                )));
            }
            for (&id, position) in ids.iter().zip(self.positions.chunks_exact(h)) {
                let word = self
                    .words
                    .get(id as usize * h..(id as usize + 1) * h)
                    .ok_or_else(|| crate::Error::Invalid(format!("token id {id} out of range")))?;
                let sums = word.iter().zip(position).zip(&self.token_type);
                x.extend(sums.map(|((&w, &p), &t)| w + p + t));
            }
        }
        Ok(x)
    }

    /// One layer over the packed rows `x` of sequences of `lens` tokens, in place.
    fn layer(&self, l: &Layer, x: &mut Vec<f32>, s: &mut Scratch, lens: &[usize]) {
        let h = self.hidden;
        let threads = rayon::current_num_threads();
        l.qkv.forward(x, &mut s.qkv, false, threads);
        let mut start = 0;
        for &len in lens.iter().filter(|&&len| len > 0) {
            attend(
                &s.qkv[start * 3 * h..(start + len) * 3 * h],
                &mut s.context[start * h..(start + len) * h],
                &mut s.scores,
                self.heads,
                len,
                false,
                threads,
            );
            start += len;
        }
        add_norm(&l.attn_out, &l.attn_norm, &s.context, x, &mut s.normed);
        let mlp = &mut s.mlp[..x.len() / h * l.up.outputs()];
        l.up.forward(x, mlp, false, threads);
        Activation::Gelu.apply(mlp);
        add_norm(&l.down, &l.out_norm, mlp, x, &mut s.normed);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    /// A tiny `config.json` with `extra` fields added (or overriding).
    fn config(extra: serde_json::Value) -> Config {
        let mut json = serde_json::json!({
            "vocab_size": 11, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
            "max_position_embeddings": 6, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.1, "model_type": "bert"
        });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json).unwrap()
    }

    fn load(cfg: &Config) -> Result<Bert> {
        Bert::load(VarBuilder::zeros(DType::F32, &Device::Cpu), cfg)
    }

    #[test]
    fn configs_this_encoder_cannot_run_are_refused_by_name() {
        let plain = config(serde_json::json!({}));
        assert_eq!(plain.position_embedding_type, "absolute");
        assert!(load(&plain).is_ok());
        let err = load(&config(serde_json::json!({"hidden_act": "gelu_new"})))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unsupported activation \"gelu_new\""), "{err}");
        let relative = config(serde_json::json!({"position_embedding_type": "relative_key"}));
        let err = load(&relative).err().unwrap().to_string();
        assert!(err.contains("\"relative_key\""), "{err}");
    }
}
