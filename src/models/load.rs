//! Loading models by registry name, fetching (and verifying) them first when they are missing.

use std::path::{Path, PathBuf};

use super::caption::{Blip, Captioner};
use super::fetch::{sha256_file, weights_sha256};
use super::image::{ClipModel, EfficientNetLite, ImageEncoder, ImageNetClasses};
use super::registry::{
    find_model, Checksum, ModelSpec, CLIP_VIT_B_32, CLIP_VIT_H_14, CLIP_VIT_L_14, IMAGENET_CLASSES,
    MINILM,
};
use super::text::{EmbedConfig, MiniLm};
use super::{fetch_model, model_status};
use crate::{Error, Result};

/// The folder of `spec` under `root`, fetched first if it is not there and verified yet.
pub fn ensure_model(
    root: &Path,
    spec: &'static ModelSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    if model_status(root, spec).ready() {
        return Ok(root.join(spec.name));
    }
    progress(&format!("{} is not fetched yet: fetching it", spec.name));
    fetch_model(root, spec, progress)
}

/// all-MiniLM-L6-v2, fetched if needed.
pub fn load_minilm(
    root: &Path,
    config: EmbedConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<MiniLm> {
    MiniLm::load(&ensure_model(root, &MINILM, progress)?, config)
}

/// An image encoder loaded by registry name, with the checksum of its weights.
pub struct LoadedImageEncoder {
    /// The encoder.
    pub encoder: Box<dyn ImageEncoder>,
    /// Its registry entry.
    pub spec: &'static ModelSpec,
    /// sha256 of the weights it was loaded from (registered, pinned by the hub at fetch, or,
    /// for [`load_image_encoder_from`], computed): what an index's manifest records.
    pub weights_sha256: String,
}

/// Names of the models [`load_image_encoder`] accepts.
pub const IMAGE_ENCODERS: &[&str] = &[
    "efficientnet-lite0",
    "efficientnet-lite2",
    "clip-vit-b-32",
    "clip-vit-l-14",
    "clip-vit-h-14",
];

fn image_spec(name: &str) -> Result<&'static ModelSpec> {
    find_model(name)
        .filter(|s| IMAGE_ENCODERS.contains(&s.name))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown image model {name}; known: {}",
                IMAGE_ENCODERS.join(", ")
            ))
        })
}

fn is_clip(spec: &ModelSpec) -> bool {
    [CLIP_VIT_B_32.name, CLIP_VIT_L_14.name, CLIP_VIT_H_14.name].contains(&spec.name)
}

/// Builds the encoder of `spec` from the files in `dir`.
fn build(spec: &'static ModelSpec, dir: &Path, sha256: String) -> Result<LoadedImageEncoder> {
    let encoder: Box<dyn ImageEncoder> = if is_clip(spec) {
        Box::new(ClipModel::load_as(dir, spec.name)?.with_weights_sha256(sha256.clone()))
    } else {
        Box::new(EfficientNetLite::load(&dir.join(spec.weights().name))?)
    };
    Ok(LoadedImageEncoder {
        encoder,
        spec,
        weights_sha256: sha256,
    })
}

/// Loads the image encoder named `name` (see [`IMAGE_ENCODERS`]), fetching it if needed.
pub fn load_image_encoder(
    root: &Path,
    name: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<LoadedImageEncoder> {
    let spec = image_spec(name)?;
    let dir = ensure_model(root, spec, progress)?;
    build(spec, &dir, weights_sha256(root, spec)?)
}

/// Loads the image encoder named `name` from the folder `dir` as it is, laid out as
/// `promptdex models fetch` would leave it (for CLIP: `config.json`, `model.safetensors`,
/// `tokenizer.json`): for a local or converted checkpoint, and for tests. Nothing is fetched;
/// the weights are hashed for the identity an index records, and must have the registered
/// sha256 where the registry has one.
pub fn load_image_encoder_from(dir: &Path, name: &str) -> Result<LoadedImageEncoder> {
    let spec = image_spec(name)?;
    let weights = dir.join(spec.weights().name);
    let sha256 = sha256_file(&weights)?;
    if let Checksum::Sha256(registered) = spec.weights().checksum() {
        if sha256 != registered {
            return Err(Error::model(
                spec.name,
                format!(
                    "{} has sha256 {sha256}, expected {registered}",
                    weights.display()
                ),
            ));
        }
    }
    build(spec, dir, sha256)
}

/// The ImageNet-1k class names, fetched if needed.
pub fn load_imagenet_classes(
    root: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageNetClasses> {
    ImageNetClasses::load_dir(&ensure_model(root, &IMAGENET_CLASSES, progress)?)
}

/// Registry names of the captioners [`load_captioner`] accepts.
pub const CAPTIONERS: &[&str] = &["blip-base", "blip-large"];

/// Loads the captioner named `name` (see [`CAPTIONERS`]), fetching it if needed, or from the
/// folder `dir` when given (a local `BlipForConditionalGeneration` checkpoint).
pub fn load_captioner(
    root: &Path,
    name: &str,
    dir: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<Box<dyn Captioner>> {
    if let Some(dir) = dir {
        return Ok(Box::new(Blip::load(dir)?));
    }
    let spec = find_model(name)
        .filter(|s| CAPTIONERS.contains(&s.name))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown captioner {name}; known: {}",
                CAPTIONERS.join(", ")
            ))
        })?;
    Ok(Box::new(Blip::load(&ensure_model(root, spec, progress)?)?))
}
