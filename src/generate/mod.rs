//! Generate: the prompt for an image, from everything the index and the models can say.
//!
//! For one image, [`Generator::generate`] gathers candidates — the prompt stored in the file
//! (used as is unless told to ignore it), captions, the ImageNet tagger's subject phrase, the
//! prompts of the nearest indexed images, the nearest corpus prompts, style modifiers mined from
//! those prompts, and the index's mean prompt as a prior — embeds them with MiniLM, merges them
//! into one weighted vector (the **ensemble**, the best guess under the Kaggle metric), and picks
//! or assembles the text closest to that vector.
//!
//! - [`config`]: how to generate, and the neighbour ramp.
//! - [`exclude`]: records and prompts a generation must leave out.
//! - [`generated`]: what a generation returns.
//! - `stages` and `candidates`: the pipeline's stages, and the candidates they assemble.
//! - [`ensemble`]: candidates, weights, the weighted mean and the closest text.
//! - [`modifiers`]: CLIP Interrogator's vocabularies and the phrases mined from prompts.
//! - [`bridge`]: ImageNet classes into prompt space (ConSE) for non-text-aligned encoders.
//! - [`cache`]: class and vocabulary vectors computed once per index.
//! - [`load`]: opening an index with every model it needs.

pub mod bridge;
pub mod cache;
mod candidates;
pub mod config;
pub mod ensemble;
pub mod exclude;
pub mod generated;
pub mod load;
pub mod modifiers;
mod stages;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

pub use config::{GenerateConfig, NeighbourRamp};
pub use ensemble::{Part, PartKind, Weights};
pub use exclude::Exclude;
pub use generated::{Generated, MethodVectors, Source, Timings};
pub use load::{open_generator, LoadOptions};
pub use modifiers::{Category, Modifier, ModifierMode, Vocabulary};

use crate::ingest::metadata::{read_metadata_of, EmbeddedPrompt};
use crate::ingest::{decode_pixels, read_image_file, DecodeLimits};
use crate::models::caption::{Captioner, ImageNetTagger};
use crate::models::{ImageEncoder, TextEmbedder};
use crate::store::{IndexRead, Space};
use crate::{Error, Result};
use stages::timed;

/// The models a generator uses besides the index.
pub struct Models {
    /// all-MiniLM-L6-v2 (the metric's embedder, and the index's text model).
    pub text: Box<dyn TextEmbedder>,
    /// The index's image encoder, when it holds images.
    pub image: Option<Box<dyn ImageEncoder>>,
    /// The ImageNet tagger, for encoders that give class logits.
    pub tagger: Option<ImageNetTagger>,
    /// Captioners.
    pub captioners: Vec<Box<dyn Captioner>>,
    /// Style vocabularies.
    pub vocabulary: Option<Vocabulary>,
}

/// Writes prompts for images from one index and its models.
pub struct Generator {
    index: Box<dyn IndexRead>,
    /// Shared with the generators over later openings of the index ([`Generator::with_index`]),
    /// as are the vectors below.
    models: Arc<Models>,
    class_vectors: Arc<Vec<Vec<f32>>>,
    /// The vocabulary phrases in a text-aligned encoder's space (empty otherwise).
    vocabulary_vectors: Arc<Vec<Vec<f32>>>,
    config: GenerateConfig,
}

impl Generator {
    /// A generator over `index`. The class phrases (with MiniLM) and, for a text-aligned
    /// encoder, the style vocabularies (with its text tower) are embedded once and cached in
    /// the index directory, or in the models directory for a server-held index.
    pub fn new(index: Box<dyn IndexRead>, models: Models, config: GenerateConfig) -> Result<Self> {
        let cache_dir = index
            .location()
            .dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(crate::models::models_root);
        let class_vectors = match &models.tagger {
            Some(tagger) => {
                let phrases = bridge::class_phrases(tagger.classes());
                cache::cached_vectors(
                    &cache_dir,
                    "imagenet-classes",
                    models.text.weights_sha256(),
                    &phrases,
                    models.text.dim(),
                    |texts| models.text.embed(texts),
                )?
            }
            None => Vec::new(),
        };
        let aligned = models.image.as_ref().and_then(|e| e.text_embedder());
        let vocabulary_vectors = match (aligned, &models.vocabulary) {
            (Some(embedder), Some(vocabulary)) => {
                let phrases: Vec<String> = vocabulary
                    .phrases()
                    .iter()
                    .map(|(p, _)| p.clone())
                    .collect();
                cache::cached_vectors(
                    &cache_dir,
                    &format!("vocabulary-{}", embedder.name()),
                    embedder.weights_sha256(),
                    &phrases,
                    embedder.dim(),
                    |texts| embedder.embed(texts),
                )?
            }
            _ => Vec::new(),
        };
        Ok(Self {
            index,
            models: Arc::new(models),
            class_vectors: Arc::new(class_vectors),
            vocabulary_vectors: Arc::new(vocabulary_vectors),
            config,
        })
    }

    /// A generator over `index`, the same index opened again (to see records added since),
    /// with this one's models, cached vectors and configuration.
    pub fn with_index(&self, index: Box<dyn IndexRead>) -> Result<Self> {
        if index.location() != self.index.location() {
            return Err(Error::index(
                index.location().path(),
                format!("is not the index {} was opened on", self.index.location()),
            ));
        }
        Ok(Self {
            index,
            models: Arc::clone(&self.models),
            class_vectors: Arc::clone(&self.class_vectors),
            vocabulary_vectors: Arc::clone(&self.vocabulary_vectors),
            config: self.config.clone(),
        })
    }

    /// The index.
    pub fn index(&self) -> &dyn IndexRead {
        self.index.as_ref()
    }

    /// The models.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// The configuration.
    pub fn config(&self) -> &GenerateConfig {
        &self.config
    }

    /// The neighbour ramp in use: the configured one, else the image encoder's default.
    pub fn neighbour_ramp(&self) -> NeighbourRamp {
        let default = self.models.image.as_deref().map(NeighbourRamp::for_encoder);
        self.config
            .neighbour_ramp
            .or(default)
            .unwrap_or(NeighbourRamp::CLASSIFIER)
    }

    /// What the index or the models lack for a full generation.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if !self.index.has_vectors(Space::Images) {
            missing.push("the index holds no images: no neighbours' prompts".to_string());
        }
        if !self.index.has_vectors(Space::Prompts) {
            missing.push("the index holds no prompts: no corpus prompts".to_string());
        }
        if self.models.image.is_none() {
            missing.push("no image encoder: no tags, no neighbours".to_string());
        }
        if self.models.captioners.is_empty() {
            missing.push("no captioner (BLIP) loaded".to_string());
        }
        if self
            .models
            .image
            .as_ref()
            .is_some_and(|e| e.text_aligned() && !self.index.has_vectors(Space::Aligned))
        {
            missing.push("no prompts in the image encoder's space yet: no cross-modal prompts (run `promptdex index`)".to_string());
        }
        if self.models.vocabulary.is_none() {
            missing.push("no style vocabulary: no modifiers".to_string());
        }
        missing
    }

    /// Reads, decodes and generates for the image file at `path`.
    pub fn generate_path(&self, path: &Path, exclude: &Exclude) -> Result<Generated> {
        let limits = DecodeLimits::default();
        let bytes = read_image_file(path, &limits)?;
        let pixels = decode_pixels(path, &bytes, &limits)?;
        let mut read = read_metadata_of(path, &bytes);
        read.fill_from_pixels(path, &pixels);
        let image = pixels.into_rgb8();
        let mut generated = self.generate(&image, read.prompt, exclude)?;
        generated.warnings = read.warnings.iter().map(ToString::to_string).collect();
        Ok(generated)
    }

    /// Generates the prompt for `image` in the configured modifier mode; `embedded` is the
    /// prompt its file carried, if any.
    pub fn generate(
        &self,
        image: &RgbImage,
        embedded: Option<EmbeddedPrompt>,
        exclude: &Exclude,
    ) -> Result<Generated> {
        self.generate_in(self.config.mode, image, embedded, exclude)
    }

    /// [`generate`](Self::generate) with modifiers picked in `mode` (a server answers fast and
    /// classic requests from one generator). Each step below is one stage (see `stages` and
    /// `candidates`).
    pub fn generate_in(
        &self,
        mode: ModifierMode,
        image: &RgbImage,
        embedded: Option<EmbeddedPrompt>,
        exclude: &Exclude,
    ) -> Result<Generated> {
        let start = Instant::now();
        if let Some(found) = self.stored_prompt(embedded) {
            return self.use_stored(found, start);
        }
        let mut timings = Timings::default();
        let (image_vector, tags) = timed(&mut timings.encode, || self.encode_image(image))?;
        let captions = timed(&mut timings.caption, || self.captions(image))?;
        let image_vector = image_vector.as_deref();
        let near = timed(&mut timings.search, || self.near(image_vector, exclude))?;
        let mut parts =
            candidates::first_round(&captions, tags.as_ref(), &near, self.neighbour_ramp());
        timed(&mut timings.embed, || self.embed_round(&mut parts))?;
        let corpus = timed(&mut timings.search, || {
            self.corpus(&parts, tags.as_ref(), &near, exclude)
        })?;
        let modifiers = self.modifiers(image_vector, &near, &corpus, mode);
        let modifier_text = candidates::modifier_phrase(&modifiers);
        let mut second = candidates::second_round(&corpus, &modifier_text);
        timed(&mut timings.embed, || self.embed_round(&mut second))?;
        parts.extend(second);
        parts.extend(self.prior());
        if parts.is_empty() {
            return Err(Error::Invalid(format!(
                "nothing to generate from: {}",
                self.missing().join("; ")
            )));
        }
        let methods = generated::method_vectors(&parts);
        let ensemble = ensemble::combine(&mut parts, &self.config.weights);
        let (prompt, vector, cosine) = timed(&mut timings.embed, || {
            self.closest_text(&parts, &modifier_text, &ensemble)
        })?;
        timings.total = stages::ms(start);
        Ok(Generated {
            prompt,
            source: Source::Ensemble,
            vector,
            ensemble,
            cosine_to_ensemble: cosine,
            embedded: None,
            tags,
            captions,
            modifiers,
            parts,
            missing: self.missing(),
            warnings: Vec::new(),
            timings_ms: timings,
            methods,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Generator>();
    }
}
