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
//! [`Encoder`](crate::models::transformer::Encoder) after a
//! [`PatchEmbedding`](crate::models::transformer::PatchEmbedding); the decoder uses its
//! [`Dense`](crate::models::transformer::Dense) layers (query, key and
//! value fused, the attention scale folded into the queries, biases and residuals fused into
//! the products) and the [`crate::models::simd`] kernels. A decoding step has a handful of rows
//! (one per image, or per beam), so its products are matrix-times-few-vectors, which
//! [`matmul`](crate::models::transformer::matmul) runs as dot products reading each weight once. The self-attention cache keeps each
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
//!
//! The rooms: [`config`] (settings and `config.json`), `vision` (the image encoder), `decoder`
//! and `cache` (the text decoder and what it keeps between steps), `search` (greedy and beam
//! decoding), [`preprocess`](mod@preprocess) (image preparation); this file holds the [`Blip`]
//! type, its loading and the [`Captioner`] impl.

mod cache;
pub mod config;
mod decoder;
pub mod preprocess;
mod search;
mod vision;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use tokenizers::Tokenizer;

use super::{Caption, Captioner};
use crate::models::config_defaults::read_config;
use crate::models::transformer::Activation;
use crate::{Error, Result};
use decoder::TextDecoder;
use vision::VisionModel;

pub use config::{BlipConfig, Decoding, ModelConfig, TextConfig, VisionConfig};
pub use preprocess::{preprocess, resize_square};

/// Images per vision forward pass (and per decoding batch) in [`Captioner::caption`].
const IMAGE_BATCH: usize = 8;

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
        let config: ModelConfig = read_config(&name, &config_path, "BLIP")?;
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

    /// Encodes preprocessed images, `(N, 3, S, S)` ([`preprocess()`]): the image tokens the
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
