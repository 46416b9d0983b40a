//! BLIP's settings: the decoding options ([`BlipConfig`], [`Decoding`]) and the
//! `transformers` `config.json` structs ([`ModelConfig`], [`TextConfig`], [`VisionConfig`])
//! with the defaults `transformers` fills in for absent fields.

use serde::Deserialize;

use crate::models::config_defaults::n;

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

/// Decoding settings for [`Blip`](super::Blip).
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
