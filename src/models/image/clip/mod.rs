//! CLIP (image and text towers) in candle, loaded from a Hugging Face `CLIPModel` folder.
//!
//! A folder holds `config.json` and `model.safetensors` in the `transformers` layout
//! (`vision_model.*`, `text_model.*`, `visual_projection`, `text_projection`, `logit_scale`),
//! which is how openai/clip-vit-base-patch32, openai/clip-vit-large-patch14 and
//! laion/CLIP-ViT-H-14-laion2B-s32B-b79K are published, and, for text, the `tokenizer.json`
//! those repositories carry: CLIP's byte-level BPE (49408 ids; NFC, whitespace runs to one
//! space, lower case, CLIP's word split; `<|startoftext|>` ... `<|endoftext|>`), run by the
//! `tokenizers` crate, truncated to the text tower's 77 positions with the end token kept
//! last, as `transformers` does with `truncation=True`. With a tokenizer the model is also a
//! [`TextEmbedder`] in the image space ([`ImageEncoder::text_embedder`]).
//!
//! The towers are written here rather than taken from `candle_transformers::models::clip`,
//! which hard-codes `quick_gelu` for the text tower and a layer-norm epsilon of 1e-5: the LAION
//! ViT-H/14 uses the exact (erf) GELU in both towers. Everything the weights cannot show
//! (activation, epsilon, heads, patch size, EOS convention) is read from `config.json`.
//! The layers of both towers run on the plain-buffer encoder of [`crate::models::transformer`]
//! (fused projections, biases and residuals; one group of images or texts per thread), the
//! patch convolution as one matrix product over the patches; the image tower's last layer
//! computes only the class token after attention, the one row it pools.
//!
//! Both towers end in a projection to `projection_dim` and the embeddings are L2-normalised,
//! so an image and a text are compared by a dot product (scaled by `exp(logit_scale)` for
//! CLIP's logits). The text is pooled at its end-of-text token: with the legacy
//! `eos_token_id` 2 (the OpenAI and LAION configs) that is the position of the highest token
//! id, as in `transformers`; otherwise the first position holding `eos_token_id`.
//!
//! Its rooms: [`config`] (`config.json`) and [`preprocess`](mod@preprocess) (image
//! preparation); this file holds the model, its loading, both towers' forward passes and the
//! [`ImageEncoder`] and [`TextEmbedder`] impls (the towers share one loader and one struct, so
//! they stay together).

pub mod config;
pub mod preprocess;

use std::collections::HashMap;
use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, VarBuilder};
use image::RgbImage;

use super::{ImageEmbedding, ImageEncoder};
use crate::models::config_defaults::read_config;
use crate::models::transformer::{Activation, Dense, Encoder, Layer, Norm, PatchEmbedding};
use crate::models::{l2_normalize, TextEmbedder};
use crate::{Error, Result};

pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use preprocess::{normalize_stack, preprocess, resize_center_crop, CLIP_MEAN, CLIP_STD};

/// Images per forward pass in [`ImageEncoder::encode`].
const IMAGE_BATCH: usize = 16;
/// Texts per forward pass in [`TextEmbedder::embed`] (sorted by length, so little padding).
const TEXT_BATCH: usize = 64;
/// Tokens CLIP's tokenizer keeps, start and end tokens included (its `model_max_length`).
pub const CLIP_MAX_TOKENS: usize = 77;
/// The `eos_token_id` of the original CLIP configs, meaning "pool at the highest token id".
const LEGACY_EOS: u32 = 2;

/// The shape of one transformer stack.
struct StackShape {
    width: usize,
    mlp: usize,
    layers: usize,
    heads: usize,
    act: Activation,
    eps: f64,
}

/// The `layers.{i}` stack under `vb`: fused query/key/value projections, the attention
/// scale folded into the queries.
fn encoder(vb: VarBuilder, s: &StackShape) -> candle_core::Result<Encoder> {
    let vb = vb.pp("layers");
    let scale = ((s.width / s.heads) as f64).powf(-0.5);
    let layers = (0..s.layers)
        .map(|i| {
            let l = vb.pp(i.to_string());
            let a = l.pp("self_attn");
            let proj = |name: &str| -> candle_core::Result<(Tensor, Tensor)> {
                let p = a.pp(name);
                Ok((
                    p.get((s.width, s.width), "weight")?,
                    p.get(s.width, "bias")?,
                ))
            };
            let (q, k, v) = (proj("q_proj")?, proj("k_proj")?, proj("v_proj")?);
            Ok(Layer {
                norm1: Norm::load(&l.pp("layer_norm1"), s.width, s.eps)?,
                qkv: Dense::fused_qkv([(&q.0, &q.1), (&k.0, &k.1), (&v.0, &v.1)], scale)?,
                out: Dense::load(&a.pp("out_proj"), s.width, s.width, true)?,
                norm2: Norm::load(&l.pp("layer_norm2"), s.width, s.eps)?,
                fc1: Dense::load(&l.pp("mlp").pp("fc1"), s.width, s.mlp, true)?,
                fc2: Dense::load(&l.pp("mlp").pp("fc2"), s.mlp, s.width, true)?,
            })
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Encoder::new(layers, s.width, s.heads, s.act))
}

/// A CLIP model: both towers and their projections, loaded from a `transformers` folder.
pub struct ClipModel {
    name: String,
    config: ClipConfig,
    // Vision tower.
    embeddings: PatchEmbedding,
    pre_norm: Norm,
    vision: Encoder,
    post_norm: Norm,
    visual_projection: Dense,
    // Text tower.
    token_embedding: Embedding,
    text_positions: Tensor,
    text: Encoder,
    final_norm: Norm,
    text_projection: Dense,
    logit_scale: f32,
    tokenizer: Option<Tokenizer>,
    weights_sha256: String,
}

impl std::fmt::Debug for ClipModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipModel")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClipModel {
    /// Loads `dir/config.json`, `dir/model.safetensors` and, when present, `dir/tokenizer.json`;
    /// the model is named after the folder. Missing, malformed or mismatched files are a
    /// [`Error::Model`] naming the file. The weights' checksum is not computed here (see
    /// [`ClipModel::with_weights_sha256`]).
    pub fn load(dir: &Path) -> Result<Self> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clip".into());
        Self::load_as(dir, &name)
    }

    /// [`ClipModel::load`], naming the model `name` whatever the folder is called.
    pub fn load_as(dir: &Path, name: &str) -> Result<Self> {
        let name = name.to_string();
        let config_path = dir.join("config.json");
        let config: ClipConfig = read_config(&name, &config_path, "CLIP")?;
        let weights = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
            .map_err(|e| Error::model(&name, format!("{}: cannot load: {e}", weights.display())))?;
        let model = Self::from_tensors(name, config, tensors, &weights)?;
        let tokenizer = dir.join("tokenizer.json");
        if tokenizer.is_file() {
            model.with_tokenizer_file(&tokenizer)
        } else {
            Ok(model)
        }
    }

    /// Uses the `tokenizers` file at `path` for text (see the module docs); fails if its ids
    /// do not fit the text tower's vocabulary.
    pub fn with_tokenizer_file(mut self, path: &Path) -> Result<Self> {
        let fail =
            |detail: String| Error::model(&self.name, format!("{}: {detail}", path.display()));
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| fail(e.to_string()))?;
        let tc = &self.config.text_config;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > tc.vocab_size {
            return Err(fail(format!(
                "{vocab} token ids, the text tower has {}",
                tc.vocab_size
            )));
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: CLIP_MAX_TOKENS.min(tc.max_position_embeddings),
                ..Default::default()
            }))
            .map_err(|e| fail(e.to_string()))?;
        self.tokenizer = Some(tokenizer);
        Ok(self)
    }

    /// Records the sha256 of the weights (what [`TextEmbedder::weights_sha256`] reports).
    pub fn with_weights_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.weights_sha256 = sha256.into();
        self
    }

    /// True when a tokenizer was loaded, so texts can be embedded.
    pub fn has_tokenizer(&self) -> bool {
        self.tokenizer.is_some()
    }

    /// CLIP token ids of each text: start token, the text's tokens (truncated), end token.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let tokenizer = self.tokenizer.as_ref().ok_or_else(|| {
            Error::model(
                &self.name,
                "no tokenizer.json beside the weights: texts cannot be embedded",
            )
        })?;
        let encodings = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::model(&self.name, format!("tokenizing: {e}")))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Tokenizes and embeds `texts`: `(N, projection_dim)`, each row unit length.
    pub fn encode_texts(&self, texts: &[&str]) -> Result<Tensor> {
        self.encode_token_ids(&self.tokenize(texts)?)
    }

    /// Builds the model from a config and its tensors; `file` names the weights in errors.
    pub fn from_tensors(
        name: String,
        config: ClipConfig,
        tensors: HashMap<String, Tensor>,
        file: &Path,
    ) -> Result<Self> {
        let fail = |detail: String| Error::model(&name, format!("{}: {detail}", file.display()));
        let (tc, vc) = (&config.text_config, &config.vision_config);
        let (text_act, vision_act) = checked_activations(&config, fail)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let build = || -> candle_core::Result<Self> {
            let v = vb.pp("vision_model");
            let e = v.pp("embeddings");
            let (d, p) = (vc.hidden_size, vc.patch_size);
            let positions = (vc.image_size / p).pow(2) + 1;
            let embeddings = PatchEmbedding::new(
                &e.pp("patch_embedding")
                    .get((d, vc.num_channels, p, p), "weight")?,
                None,
                &e.get(d, "class_embedding")?,
                &e.pp("position_embedding").get((positions, d), "weight")?,
                vc.image_size,
            )?;
            let vision_shape = StackShape {
                width: vc.hidden_size,
                mlp: vc.intermediate_size,
                layers: vc.num_hidden_layers,
                heads: vc.num_attention_heads,
                act: vision_act,
                eps: vc.layer_norm_eps,
            };
            let text_shape = StackShape {
                width: tc.hidden_size,
                mlp: tc.intermediate_size,
                layers: tc.num_hidden_layers,
                heads: tc.num_attention_heads,
                act: text_act,
                eps: tc.layer_norm_eps,
            };
            let t = vb.pp("text_model");
            let te = t.pp("embeddings");
            let logit_scale = if vb.contains_tensor("logit_scale") {
                vb.get((), "logit_scale")?.to_scalar::<f32>()?
            } else {
                config.logit_scale_init_value
            };
            Ok(Self {
                embeddings,
                pre_norm: Norm::load(&v.pp("pre_layrnorm"), d, vc.layer_norm_eps)?,
                vision: encoder(v.pp("encoder"), &vision_shape)?,
                post_norm: Norm::load(&v.pp("post_layernorm"), d, vc.layer_norm_eps)?,
                visual_projection: Dense::load(
                    &vb.pp("visual_projection"),
                    d,
                    config.projection_dim,
                    false,
                )?,
                token_embedding: candle_nn::embedding(
                    tc.vocab_size,
                    tc.hidden_size,
                    te.pp("token_embedding"),
                )?,
                text_positions: te
                    .pp("position_embedding")
                    .get((tc.max_position_embeddings, tc.hidden_size), "weight")?,
                text: encoder(t.pp("encoder"), &text_shape)?,
                final_norm: Norm::load(
                    &t.pp("final_layer_norm"),
                    tc.hidden_size,
                    tc.layer_norm_eps,
                )?,
                text_projection: Dense::load(
                    &vb.pp("text_projection"),
                    tc.hidden_size,
                    config.projection_dim,
                    false,
                )?,
                logit_scale,
                tokenizer: None,
                weights_sha256: String::new(),
                name: name.clone(),
                config: config.clone(),
            })
        };
        build().map_err(|e| fail(e.to_string()))
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// `exp(logit_scale)`: CLIP's logits are this times the dot product of the embeddings.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// Embeds preprocessed images, `(N, 3, S, S)` with S the config's `image_size` (see
    /// [`preprocess`]): `(N, projection_dim)`, each row unit length.
    pub fn encode_images(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let vc = &self.config.vision_config;
        let (n, c, h, w) = pixel_values.dims4()?;
        if c != vc.num_channels || h != vc.image_size || w != vc.image_size {
            return Err(Error::Invalid(format!(
                "{}: expected images of shape (N, {}, {s}, {s}), got ({n}, {c}, {h}, {w})",
                self.name,
                vc.num_channels,
                s = vc.image_size
            )));
        }
        let pixels = pixel_values
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let d = vc.hidden_size;
        let len = self.embeddings.tokens();
        let tokens = self.embeddings.forward(&pixels);
        let mut x = vec![0f32; tokens.len()];
        self.pre_norm.forward(&tokens, &mut x);
        self.vision.forward(&mut x, len, false, true);
        let pooled: Vec<f32> = x
            .chunks_exact(len * d)
            .flat_map(|s| &s[..d])
            .copied()
            .collect();
        Ok(project(&self.post_norm, &self.visual_projection, &pooled)?)
    }

    /// Embeds token-id sequences (each with its start and end-of-text tokens, as CLIP's
    /// tokenizer gives them; lengths may differ): `(N, projection_dim)`, each row unit length.
    pub fn encode_token_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let tc = &self.config.text_config;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        if ids.is_empty() || ids.iter().any(Vec::is_empty) {
            return Err(Error::Invalid(format!(
                "{}: empty token sequence",
                self.name
            )));
        }
        if longest > tc.max_position_embeddings {
            return Err(Error::Invalid(format!(
                "{}: {longest} tokens, at most {} fit",
                self.name, tc.max_position_embeddings
            )));
        }
        if let Some(bad) = ids.iter().flatten().find(|&&t| t as usize >= tc.vocab_size) {
            return Err(Error::Invalid(format!(
                "{}: token id {bad} is outside the vocabulary of {}",
                self.name, tc.vocab_size
            )));
        }
        // Padding goes after each sequence's end: the causal mask keeps it from reaching
        // the pooled position.
        let mut flat = Vec::with_capacity(ids.len() * longest);
        let mut pooled = Vec::with_capacity(ids.len());
        for (i, seq) in ids.iter().enumerate() {
            flat.extend(
                seq.iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .take(longest),
            );
            pooled.push(i * longest + eos_position(seq, tc.eos_token_id));
        }
        let tokens = Tensor::from_vec(flat, (ids.len(), longest), &Device::Cpu)?;
        let x = self
            .token_embedding
            .forward(&tokens)?
            .broadcast_add(&self.text_positions.narrow(0, 0, longest)?)?;
        let mut x = x.flatten_all()?.to_vec1::<f32>()?;
        self.text.forward(&mut x, longest, true, false);
        let d = tc.hidden_size;
        let pooled: Vec<f32> = pooled
            .iter()
            .flat_map(|&r| &x[r * d..(r + 1) * d])
            .copied()
            .collect();
        Ok(project(&self.final_norm, &self.text_projection, &pooled)?)
    }
}

/// The text and vision towers' activations, once `config`'s shapes are checked (widths a
/// multiple of the heads, the image a multiple of the patch); `fail` makes the error.
fn checked_activations(
    config: &ClipConfig,
    fail: impl Fn(String) -> Error,
) -> Result<(Activation, Activation)> {
    let (tc, vc) = (&config.text_config, &config.vision_config);
    let act =
        |s: &str| Activation::parse(s).ok_or_else(|| fail(format!("unsupported hidden_act {s:?}")));
    let (text_act, vision_act) = (act(&tc.hidden_act)?, act(&vc.hidden_act)?);
    for (what, width, heads) in [
        ("text", tc.hidden_size, tc.num_attention_heads),
        ("vision", vc.hidden_size, vc.num_attention_heads),
    ] {
        if heads == 0 || width % heads != 0 {
            return Err(fail(format!(
                "{what} width {width} is not a multiple of {heads} heads"
            )));
        }
    }
    if vc.patch_size == 0 || vc.image_size % vc.patch_size != 0 {
        return Err(fail(format!(
            "image size {} is not a multiple of patch size {}",
            vc.image_size, vc.patch_size
        )));
    }
    Ok((text_act, vision_act))
}

/// A tower's head: `norm`, `projection` and L2 normalisation of the pooled rows, as an
/// `(rows, projection_dim)` tensor.
fn project(norm: &Norm, projection: &Dense, pooled: &[f32]) -> candle_core::Result<Tensor> {
    let mut normed = vec![0f32; pooled.len()];
    norm.forward(pooled, &mut normed);
    let (rows, dim) = (pooled.len() / projection.inputs(), projection.outputs());
    let mut out = vec![0f32; rows * dim];
    projection.forward(&normed, &mut out, false, 1);
    out.chunks_exact_mut(dim).for_each(l2_normalize);
    Tensor::from_vec(out, (rows, dim), &Device::Cpu)
}

/// Where a sequence is pooled: the first highest id under the legacy convention, else the
/// first `eos` (position 0 when there is none, as in `transformers`).
fn eos_position(seq: &[u32], eos: u32) -> usize {
    if eos == LEGACY_EOS {
        let max = seq.iter().copied().max().unwrap_or(0);
        seq.iter().position(|&t| t == max).unwrap_or(0)
    } else {
        seq.iter().position(|&t| t == eos).unwrap_or(0)
    }
}

impl ImageEncoder for ClipModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.config.projection_dim
    }

    fn text_aligned(&self) -> bool {
        true
    }

    fn input_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    fn encode(&self, images: &[RgbImage]) -> Result<Vec<ImageEmbedding>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(IMAGE_BATCH) {
            let x = preprocess(chunk, self.input_size())?;
            let rows = self.encode_images(&x)?.to_vec2::<f32>()?;
            out.extend(rows.into_iter().map(|vector| ImageEmbedding {
                vector,
                logits: None,
            }));
        }
        Ok(out)
    }

    fn text_embedder(&self) -> Option<&dyn TextEmbedder> {
        self.has_tokenizer().then_some(self as &dyn TextEmbedder)
    }
}

/// The text tower as a text embedder: its vectors share the space of the image embeddings.
impl TextEmbedder for ClipModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    fn dim(&self) -> usize {
        self.config.projection_dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.tokenize(texts)?;
        // Batches of similar lengths pad little; results go back in input order.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(TEXT_BATCH) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let rows = self.encode_token_ids(&batch)?.to_vec2::<f32>()?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i] = row;
            }
        }
        Ok(out)
    }
}
