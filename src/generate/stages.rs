//! The stages of [`Generator::generate`] that run a model or search the index, in their order.

use std::collections::HashSet;
use std::time::Instant;

use image::RgbImage;

use super::candidates::{self, Found, Near, Nearby};
use super::ensemble::{self, Part, PartKind};
use super::{bridge, modifiers, Exclude, Generated, Generator, Modifier, ModifierMode};
use crate::ingest::metadata::EmbeddedPrompt;
use crate::models::caption::{Caption, Tags};
use crate::store::Space;
use crate::{Error, Result};

impl Generator {
    /// Stored prompt: the prompt the file carried, unless told to ignore it or it is empty.
    pub(super) fn stored_prompt(&self, embedded: Option<EmbeddedPrompt>) -> Option<EmbeddedPrompt> {
        embedded.filter(|e| !self.config.ignore_metadata && !e.prompt.is_empty())
    }

    /// The generation for a stored prompt: the prompt as is, with its vector; `start` is when
    /// generation began.
    pub(super) fn use_stored(&self, found: EmbeddedPrompt, start: Instant) -> Result<Generated> {
        let vector = self
            .models
            .text
            .embed(&[&found.prompt])?
            .pop()
            .ok_or_else(|| Error::Internal("the text embedder returned nothing".into()))?;
        Ok(Generated::stored(found, vector, ms(start)))
    }

    /// Encode image: its embedding, and the tagger's tags from the class logits of the same
    /// pass (none without an image encoder, or without logits or a tagger).
    pub(super) fn encode_image(
        &self,
        image: &RgbImage,
    ) -> Result<(Option<Vec<f32>>, Option<Tags>)> {
        let encoded = match &self.models.image {
            Some(encoder) => encoder.encode(std::slice::from_ref(image))?.pop(),
            None => None,
        };
        let tags = match (
            &self.models.tagger,
            encoded.as_ref().and_then(|e| e.logits.as_ref()),
        ) {
            (Some(tagger), Some(logits)) => {
                Some(tagger.tag(logits, self.config.bridge_classes.max(5)))
            }
            _ => None,
        };
        Ok((encoded.map(|e| e.vector), tags))
    }

    /// Captions: every captioner's descriptions of the image, in the captioners' order.
    pub(super) fn captions(&self, image: &RgbImage) -> Result<Vec<Caption>> {
        let mut captions = Vec::new();
        for captioner in &self.models.captioners {
            captions.extend(captioner.caption(std::slice::from_ref(image))?);
        }
        Ok(captions)
    }

    /// Neighbours and cross-modal: the nearest indexed images that carry a prompt; and, with a
    /// text-aligned encoder, the corpus prompts nearest to the image in its space.
    pub(super) fn near(&self, image_vector: Option<&[f32]>, exclude: &Exclude) -> Result<Near> {
        let config = &self.config;
        let none = HashSet::new();
        let neighbours = self.nearest_prompts(
            Space::Images,
            image_vector,
            config.neighbours,
            exclude,
            &none,
            |p| !p.is_empty(),
        )?;
        let cross_modal = self.nearest_prompts(
            Space::Aligned,
            image_vector,
            config.corpus,
            exclude,
            &none,
            |p| !candidates::too_short(p),
        )?;
        Ok(Near {
            neighbours: Nearby::new(neighbours, config.temperature),
            cross_modal: Nearby::new(cross_modal, config.temperature),
        })
    }

    /// An embedding round: each part's MiniLM vector, from one call over their texts.
    pub(super) fn embed_round(&self, parts: &mut [Part]) -> Result<()> {
        let texts: Vec<&str> = parts.iter().map(|p| p.text.as_str()).collect();
        let vectors = self.models.text.embed(&texts)?;
        for (part, vector) in parts.iter_mut().zip(vectors) {
            part.vector = vector;
        }
        Ok(())
    }

    /// Corpus and bridge: the corpus prompts nearest to what the first round suggests
    /// ([`Self::corpus_query`]), other than those already found `near` the image.
    pub(super) fn corpus(
        &self,
        first: &[Part],
        tags: Option<&Tags>,
        near: &Near,
        exclude: &Exclude,
    ) -> Result<Nearby> {
        let query = self.corpus_query(first, tags);
        let found = self.nearest_prompts(
            Space::Prompts,
            query.as_deref(),
            self.config.corpus,
            exclude,
            &near.ids(),
            |p| !candidates::too_short(p),
        )?;
        Ok(Nearby::new(found, self.config.temperature))
    }

    /// Modifiers: ranked against the image in a text-aligned encoder's space, else mined from
    /// the neighbours' and corpus prompts, picked as `mode` says; none without a vocabulary
    /// or when none are asked.
    pub(super) fn modifiers(
        &self,
        image_vector: Option<&[f32]>,
        near: &Near,
        corpus: &Nearby,
        mode: ModifierMode,
    ) -> Vec<Modifier> {
        let config = &self.config;
        let Some(vocabulary) = self
            .models
            .vocabulary
            .as_ref()
            .filter(|_| config.modifiers > 0)
        else {
            return Vec::new();
        };
        let ranked = if self.vocabulary_vectors.is_empty() {
            let weighted = candidates::mining_weights(&near.neighbours, corpus, &config.weights);
            vocabulary.mine(&weighted)
        } else {
            vocabulary.rank(&self.vocabulary_vectors, image_vector.unwrap_or_default())
        };
        modifiers::pick(&ranked, mode, config.modifiers)
    }

    /// The prior: the index's mean prompt, when it holds prompts.
    pub(super) fn prior(&self) -> Option<Part> {
        let mean = self.index.mean_prompt()?;
        Some(candidates::prior(mean))
    }

    /// Text pick: of the candidate texts and the heaviest joined with the modifiers, the one
    /// closest to `target`, with its vector and cosine.
    pub(super) fn closest_text(
        &self,
        parts: &[Part],
        modifier_text: &str,
        target: &[f32],
    ) -> Result<(String, Vec<f32>, f32)> {
        let as_they_are = candidates::as_they_are(parts);
        let mut texts: Vec<String> = as_they_are.iter().map(|p| p.text.clone()).collect();
        let mut vectors: Vec<Vec<f32>> = as_they_are.iter().map(|p| p.vector.clone()).collect();
        let assembled = candidates::assembled(parts, modifier_text);
        if !assembled.is_empty() {
            let refs: Vec<&str> = assembled.iter().map(String::as_str).collect();
            vectors.extend(self.models.text.embed(&refs)?);
            texts.extend(assembled);
        }
        let (best, cosine) = ensemble::closest(&vectors, target)
            .ok_or_else(|| Error::Internal("no candidate text to choose from".into()))?;
        Ok((texts.swap_remove(best), vectors.swap_remove(best), cosine))
    }

    /// Up to `count` records nearest to `query` in `space`, leaving out excluded records, the
    /// `taken` ones and prompts `keep` refuses.
    fn nearest_prompts(
        &self,
        space: Space,
        query: Option<&[f32]>,
        count: usize,
        exclude: &Exclude,
        taken: &HashSet<u64>,
        keep: fn(&str) -> bool,
    ) -> Result<Vec<Found>> {
        let Some(query) = query else {
            return Ok(Vec::new());
        };
        // Over-fetch: excluded, taken and refused records are among the nearest.
        let wanted = count * 2 + exclude.records() + taken.len() + 8;
        let mut found = Vec::with_capacity(count);
        for hit in self.index.nearest(space, query, wanted, self.config.ef)? {
            let prompt = hit.record.prompt;
            if taken.contains(&hit.id)
                || !keep(&prompt)
                || exclude.excludes(hit.id, &prompt, &hit.record.metadata)
            {
                continue;
            }
            found.push(Found {
                id: hit.id,
                prompt,
                similarity: hit.similarity,
            });
            if found.len() == count {
                break;
            }
        }
        Ok(found)
    }

    /// Where to look for corpus prompts: the mean of the captions, the tags' ConSE vector (the
    /// bridge), the neighbours' prompts and the cross-modal prompts.
    fn corpus_query(&self, parts: &[Part], tags: Option<&Tags>) -> Option<Vec<f32>> {
        let w = &self.config.weights;
        let mut vectors: Vec<&[f32]> = Vec::new();
        let mut weights: Vec<f32> = Vec::new();
        for part in parts {
            let kind_weight = match part.kind {
                PartKind::Caption => w.caption,
                PartKind::Neighbour => w.neighbours,
                PartKind::CrossModal => w.cross_modal,
                _ => continue,
            };
            vectors.push(&part.vector);
            weights.push(kind_weight * part.share);
        }
        let conse = tags
            .filter(|_| self.config.bridge)
            .and_then(|t| bridge::conse_vector(t, &self.class_vectors, self.config.bridge_classes));
        if let Some(conse) = &conse {
            vectors.push(conse);
            weights.push(w.tags.max(w.caption));
        }
        (!vectors.is_empty() && weights.iter().sum::<f32>() > 0.0)
            .then(|| ensemble::weighted_mean(&vectors, &weights))
    }
}

/// Runs `stage`, adding the milliseconds it took to `slot`.
pub(super) fn timed<T>(slot: &mut f64, stage: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = stage();
    *slot += ms(start);
    out
}

/// Milliseconds since `since`.
pub(super) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
