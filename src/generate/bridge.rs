//! A bridge from ImageNet classes into prompt space without CLIP (ConSE: "convex combination
//! of semantic embeddings", Norouzi et al. 2014): the probability-weighted mean of the MiniLM
//! vectors of the most likely class phrases is a 384-d vector among the prompts, so corpus
//! prompts can be retrieved for an image even when the image encoder is not text-aligned.

use crate::models::caption::{tagger::with_article, Tags};
use crate::models::image::ImageNetClasses;

use super::ensemble::weighted_mean;

/// The phrase embedded for each class ("a golden retriever"), in class order.
pub fn class_phrases(classes: &ImageNetClasses) -> Vec<String> {
    classes.names().iter().map(|n| with_article(n)).collect()
}

/// The ConSE vector of an image: its top `k` classes' phrase vectors, weighted by probability
/// (`None` without tags).
pub fn conse_vector(tags: &Tags, class_vectors: &[Vec<f32>], k: usize) -> Option<Vec<f32>> {
    let top: Vec<(&[f32], f32)> = tags
        .top
        .iter()
        .take(k)
        .filter_map(|t| Some((class_vectors.get(t.class)?.as_slice(), t.probability)))
        .collect();
    if top.is_empty() {
        return None;
    }
    let (vectors, weights): (Vec<&[f32]>, Vec<f32>) = top.into_iter().unzip();
    Some(weighted_mean(&vectors, &weights))
}
