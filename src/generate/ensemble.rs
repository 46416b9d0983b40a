//! The ensemble: candidate prompts and phrases, each with a MiniLM vector and a weight, merged
//! into one vector; and the choice of the text that lies closest to it.

use serde::Serialize;

use crate::models::l2_normalize;
use crate::store::dot;

/// What a candidate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// The prompt stored in the image file.
    Embedded,
    /// A captioner's description.
    Caption,
    /// The ImageNet tagger's subject phrase.
    Tags,
    /// The prompt of a nearby indexed image.
    Neighbour,
    /// A corpus prompt near the image's prompts and tags (in MiniLM space).
    Corpus,
    /// A corpus prompt near the image in a text-aligned encoder's space (CLIP).
    CrossModal,
    /// Style modifiers, as one phrase.
    Modifiers,
    /// The mean prompt of the index (a prior).
    Prior,
}

/// One candidate of the ensemble.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Part {
    /// What it is.
    pub kind: PartKind,
    /// Its text (empty for the prior, which is a vector only).
    pub text: String,
    /// Its share of the ensemble (all weights sum to 1).
    pub weight: f32,
    /// Its share within its kind (the kind's shares sum to 1 at most: less when the
    /// candidates are weak matches).
    pub share: f32,
    /// Similarity that ranked it (image or query similarity), when it has one.
    pub similarity: Option<f32>,
    /// Record id, for prompts from the index.
    pub id: Option<u64>,
    /// Its MiniLM vector.
    #[serde(skip)]
    pub vector: Vec<f32>,
}

/// Weights of the kinds of candidates; within a kind, candidates share the kind's weight by a
/// softmax of their similarities (see [`GenerateConfig::temperature`](super::GenerateConfig)),
/// and a kind whose candidates are all weak matches gets less than its full weight. Kinds with
/// no candidate drop out and the rest are renormalised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    /// Captions.
    pub caption: f32,
    /// The tagger's subject phrase.
    pub tags: f32,
    /// Nearest images' prompts.
    pub neighbours: f32,
    /// Nearest corpus prompts.
    pub corpus: f32,
    /// Nearest prompts across modalities (text-aligned encoders only).
    pub cross_modal: f32,
    /// The modifiers phrase.
    pub modifiers: f32,
    /// The index's mean prompt.
    pub prior: f32,
}

impl Default for Weights {
    /// Tuned by leave-one-out on the 48 images of the shared eval sets against a 100k-prompt
    /// corpus (`promptdex eval --tune`, docs/BENCHMARKS.md). The modifiers phrase does not
    /// move the ensemble closer to true prompts, so it only shapes the text.
    fn default() -> Self {
        Self {
            caption: 1.0,
            tags: 1.0,
            neighbours: 4.0,
            corpus: 4.0,
            // Untuned: no real CLIP weights can be had here; as strong as the corpus prompts.
            cross_modal: 4.0,
            modifiers: 0.0,
            prior: 2.0,
        }
    }
}

impl Weights {
    /// The weight of one kind.
    pub fn of(&self, kind: PartKind) -> f32 {
        match kind {
            PartKind::Embedded => 1.0,
            PartKind::Caption => self.caption,
            PartKind::Tags => self.tags,
            PartKind::Neighbour => self.neighbours,
            PartKind::Corpus => self.corpus,
            PartKind::CrossModal => self.cross_modal,
            PartKind::Modifiers => self.modifiers,
            PartKind::Prior => self.prior,
        }
    }
}

/// Softmax of `similarities / temperature`: the shares of candidates within a kind.
pub fn shares(similarities: &[f32], temperature: f32) -> Vec<f32> {
    let t = temperature.max(1e-6);
    let max = similarities
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = similarities.iter().map(|s| ((s - max) / t).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

/// Sets each part's weight (kind weight x its share within the kind, all summing to 1) and
/// returns the unit-length weighted mean of their vectors.
pub fn combine(parts: &mut [Part], weights: &Weights) -> Vec<f32> {
    let total: f32 = parts.iter().map(|p| weights.of(p.kind) * p.share).sum();
    let dim = parts.first().map_or(0, |p| p.vector.len());
    let mut mean = vec![0f32; dim];
    for part in parts.iter_mut() {
        part.weight = if total > 0.0 {
            weights.of(part.kind) * part.share / total
        } else {
            0.0
        };
        for (m, x) in mean.iter_mut().zip(&part.vector) {
            *m += part.weight * x;
        }
    }
    l2_normalize(&mut mean);
    mean
}

/// The unit-length mean of `vectors` weighted by `weights`.
pub fn weighted_mean(vectors: &[&[f32]], weights: &[f32]) -> Vec<f32> {
    let dim = vectors.first().map_or(0, |v| v.len());
    let mut mean = vec![0f32; dim];
    for (v, w) in vectors.iter().zip(weights) {
        for (m, x) in mean.iter_mut().zip(v.iter()) {
            *m += w * x;
        }
    }
    l2_normalize(&mut mean);
    mean
}

/// The index of the candidate whose vector is closest to `target`, with that cosine.
pub fn closest(candidates: &[Vec<f32>], target: &[f32]) -> Option<(usize, f32)> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, v)| (i, dot(v, target)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(kind: PartKind, share: f32, vector: Vec<f32>) -> Part {
        Part {
            kind,
            text: String::new(),
            weight: 0.0,
            share,
            similarity: None,
            id: None,
            vector,
        }
    }

    #[test]
    fn weights_renormalise_over_present_kinds() {
        let mut parts = vec![
            part(PartKind::Neighbour, 0.5, vec![1.0, 0.0]),
            part(PartKind::Neighbour, 0.5, vec![0.0, 1.0]),
            part(PartKind::Prior, 1.0, vec![1.0, 0.0]),
        ];
        let weights = Weights {
            neighbours: 3.0,
            prior: 1.0,
            ..Weights::default()
        };
        let v = combine(&mut parts, &weights);
        let w: Vec<f32> = parts.iter().map(|p| p.weight).collect();
        assert_eq!(w, [0.375, 0.375, 0.25]);
        let expected = {
            let mut e = vec![0.625, 0.375];
            l2_normalize(&mut e);
            e
        };
        assert!((v[0] - expected[0]).abs() < 1e-6 && (v[1] - expected[1]).abs() < 1e-6);
    }

    #[test]
    fn softmax_shares() {
        let s = shares(&[0.9, 0.8], 0.1);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((s[0] / s[1] - 1f32.exp()).abs() < 1e-4);
        assert_eq!(
            closest(&[vec![1.0, 0.0], vec![0.6, 0.8]], &[0.0, 1.0]),
            Some((1, 0.8))
        );
    }
}
