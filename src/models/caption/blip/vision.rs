//! BLIP's ViT image encoder on plain buffers: patch embedding with a class token, pre-norm
//! layers with a fused `qkv` projection, a final `post_layernorm`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::config::VisionConfig;
use crate::models::transformer::{Activation, Dense, Encoder, Layer, Norm, PatchEmbedding};

/// The ViT image encoder on plain buffers: [`PatchEmbedding`], the pre-norm
/// [`Encoder`] and a final layer norm.
pub(super) struct VisionModel {
    pub(super) embeddings: PatchEmbedding,
    encoder: Encoder,
    post_norm: Norm,
    pub(super) width: usize,
}

impl VisionModel {
    pub(super) fn load(
        vb: VarBuilder,
        c: &VisionConfig,
        act: Activation,
    ) -> candle_core::Result<Self> {
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
    pub(super) fn forward(&self, pixels: &[f32]) -> Vec<f32> {
        let mut x = self.embeddings.forward(pixels);
        self.encoder
            .forward(&mut x, self.embeddings.tokens(), false, false);
        let mut out = vec![0f32; x.len()];
        self.post_norm.forward(&x, &mut out);
        out
    }
}
