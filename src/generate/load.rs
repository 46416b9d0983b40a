//! Opening an index with every model its generations need, fetching missing models first.

use std::path::Path;

use super::{GenerateConfig, Generator, Models, Vocabulary};
use crate::models::caption::ImageNetTagger;
use crate::models::load::{
    ensure_model, load_captioner, load_image_encoder, load_image_encoder_from,
    load_imagenet_classes, load_minilm,
};
use crate::models::registry::INTERROGATOR_VOCAB;
use crate::models::text::EmbedConfig;
use crate::models::TextEmbedder;
use crate::store::{open_reader, Location, Manifest};
use crate::{Error, Result};

/// The image encoder used for an index that holds no images yet.
pub const DEFAULT_IMAGE_ENCODER: &str = "efficientnet-lite0";

/// What to load besides what the index names.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Skip the style vocabularies (no modifiers).
    pub no_modifiers: bool,
    /// MiniLM threading (the default runs one batch across all cores).
    pub embed: EmbedConfig,
    /// Load the index's image encoder from this folder instead of the models folder (a local
    /// checkpoint, as `index --model-dir` takes).
    pub image_model_dir: Option<std::path::PathBuf>,
    /// Captioners by registry name (`blip-base`, `blip-large`; fetched from the hub).
    pub captioners: Vec<String>,
    /// Captioners from local BLIP checkpoint folders.
    pub captioner_dirs: Vec<std::path::PathBuf>,
}

/// Opens the index at `location` read-only and loads MiniLM, the index's image encoder (or
/// [`DEFAULT_IMAGE_ENCODER`] when it holds no images), the ImageNet tagger when the encoder
/// gives class logits, and the style vocabularies.
pub fn open_generator(
    models_root: &Path,
    location: &Location,
    options: &LoadOptions,
    config: GenerateConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Generator> {
    let index = open_reader(location, None)?;
    let text = load_minilm(models_root, options.embed.clone(), progress)?;
    index.manifest().check_compatible(
        location.path(),
        &Manifest::new(text.name(), text.weights_sha256(), text.dim()),
    )?;
    // An index without images still gets the default encoder: its tags find corpus prompts.
    let encoder_name = index
        .manifest()
        .image_model
        .as_ref()
        .map_or(DEFAULT_IMAGE_ENCODER, |m| m.name.as_str());
    let (image, tagger) = {
        let loaded = match &options.image_model_dir {
            Some(dir) => load_image_encoder_from(dir, encoder_name)?,
            None => load_image_encoder(models_root, encoder_name, progress)?,
        };
        if let Some(recorded) = &index.manifest().image_model {
            if loaded.weights_sha256 != recorded.sha256 {
                return Err(Error::index(
                    location.path(),
                    format!(
                        "its images were embedded with other {} weights (sha256 {})",
                        recorded.name, recorded.sha256
                    ),
                ));
            }
        }
        let tagger = if loaded
            .spec
            .requires
            .iter()
            .any(|r| r.name == "imagenet-1k-classes")
        {
            Some(ImageNetTagger::new(load_imagenet_classes(
                models_root,
                progress,
            )?))
        } else {
            None
        };
        (Some(loaded.encoder), tagger)
    };
    let vocabulary = if options.no_modifiers {
        None
    } else {
        let dir = ensure_model(models_root, &INTERROGATOR_VOCAB, progress)?;
        Some(Vocabulary::load_dir(&dir)?)
    };
    let mut captioners = Vec::new();
    for name in &options.captioners {
        captioners.push(load_captioner(models_root, name, None, progress)?);
    }
    for dir in &options.captioner_dirs {
        captioners.push(load_captioner(models_root, "blip", Some(dir), progress)?);
    }
    Generator::new(
        index,
        Models {
            text: Box::new(text),
            image,
            tagger,
            captioners,
            vocabulary,
        },
        config,
    )
}
