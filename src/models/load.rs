//! Loading models by registry name, fetching (and verifying) them first when they are missing.

use std::path::{Path, PathBuf};

use super::image::{EfficientNetLite, ImageEncoder, ImageNetClasses};
use super::registry::{find_model, ModelSpec, IMAGENET_CLASSES, MINILM};
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
}

/// Names of the models [`load_image_encoder`] accepts.
pub const IMAGE_ENCODERS: &[&str] = &["efficientnet-lite0", "efficientnet-lite2"];

/// Loads the image encoder named `name` (see [`IMAGE_ENCODERS`]), fetching it if needed.
pub fn load_image_encoder(
    root: &Path,
    name: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<LoadedImageEncoder> {
    let spec = find_model(name)
        .filter(|s| IMAGE_ENCODERS.contains(&s.name))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown image model {name}; known: {}",
                IMAGE_ENCODERS.join(", ")
            ))
        })?;
    let dir = ensure_model(root, spec, progress)?;
    let encoder = EfficientNetLite::load(&dir.join(spec.weights().name))?;
    Ok(LoadedImageEncoder {
        encoder: Box::new(encoder),
        spec,
    })
}

/// The ImageNet-1k class names, fetched if needed.
pub fn load_imagenet_classes(
    root: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageNetClasses> {
    ImageNetClasses::load_dir(&ensure_model(root, &IMAGENET_CLASSES, progress)?)
}
