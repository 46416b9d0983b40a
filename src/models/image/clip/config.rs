//! CLIP's `config.json`: the parts of a `transformers` `CLIPConfig` the towers need, with
//! the defaults `transformers` fills in for absent fields.

use serde::Deserialize;

use crate::models::config_defaults::n;

/// The part of a `transformers` `CLIPConfig` (`config.json`) the towers need.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// Length of both projected embeddings.
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// The initial `logit_scale`, used when the checkpoint has none.
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f32,
    /// The text tower.
    pub text_config: ClipTextConfig,
    /// The image tower.
    pub vision_config: ClipVisionConfig,
}

/// `text_config` of a `CLIPConfig`; absent fields take the `transformers` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Number of token ids.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Width of the transformer.
    #[serde(default = "n::<512>")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "n::<2048>")]
    pub intermediate_size: usize,
    /// Number of layers.
    #[serde(default = "n::<12>")]
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    #[serde(default = "n::<8>")]
    pub num_attention_heads: usize,
    /// Longest token sequence.
    #[serde(default = "n::<77>")]
    pub max_position_embeddings: usize,
    /// MLP activation (`quick_gelu` or `gelu`).
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// End-of-text token; 2 means "the highest id" (see the module docs).
    #[serde(default = "d_eos")]
    pub eos_token_id: u32,
}

/// `vision_config` of a `CLIPConfig`; absent fields take the `transformers` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the transformer.
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
    /// Input channels.
    #[serde(default = "n::<3>")]
    pub num_channels: usize,
    /// Side of the square input.
    #[serde(default = "n::<224>")]
    pub image_size: usize,
    /// Side of a patch.
    #[serde(default = "n::<32>")]
    pub patch_size: usize,
    /// MLP activation (`quick_gelu` or `gelu`).
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

fn default_projection_dim() -> usize {
    512
}
fn default_logit_scale() -> f32 {
    2.6592
}
fn d_vocab() -> usize {
    49408
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}
fn d_eos() -> u32 {
    49407
}
