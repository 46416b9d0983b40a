//! Search by image: the nearest indexed images, and prompts when the encoder shares the
//! prompts' vector space.
//!
//! With a text-aligned image model (CLIP) the query image's vector is also looked up in the
//! cross-modal prompt graph (every prompt embedded by the model's text tower, see
//! [`crate::store`]): those are the `prompts`, ranked by cosine similarity between the image and
//! the prompt text, withdrawn records skipped and repeated texts shown once. They are separate
//! from `images`, whose prompts are those of the nearest pictures.

use serde::Serialize;
use serde_json::{Map, Value};

use super::text::PromptHit;
use crate::models::image::ImageEncoder;
use crate::store::{IndexRead, Space};
use crate::{Error, Result};

/// An indexed image near the query.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageHit {
    /// Record id.
    pub id: u64,
    /// Path of the image.
    pub path: String,
    /// Its embedded prompt, if it had one.
    pub prompt: Option<String>,
    /// Cosine similarity to the query image.
    pub similarity: f32,
    /// Size, negative prompt, generation parameters.
    pub metadata: Map<String, Value>,
}

/// The answer to a search by image.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageSearch {
    /// Nearest indexed images, best first.
    pub images: Vec<ImageHit>,
    /// Nearest prompts (corpus prompts and images' prompts) to the image itself, compared in
    /// the image model's space (cross-modal), when the encoder is text-aligned; best first,
    /// `score` and `similarity` both the cosine similarity.
    pub prompts: Vec<PromptHit>,
    /// Why cross-modal prompts are missing or incomplete, when they are.
    pub note: Option<String>,
}

/// Finds the `k` indexed images nearest to `image` (with search breadth `ef`).
pub fn search_by_image(
    index: &dyn IndexRead,
    encoder: &dyn ImageEncoder,
    image: &image::RgbImage,
    k: usize,
    ef: usize,
) -> Result<ImageSearch> {
    let Some(model) = &index.manifest().image_model else {
        return Err(Error::index(
            index.location().path(),
            "holds no images; add some with `promptdex index FOLDER`",
        ));
    };
    if model.name != encoder.name() {
        return Err(Error::index(
            index.location().path(),
            format!(
                "its images were embedded with {}, not {}",
                model.name,
                encoder.name()
            ),
        ));
    }
    let query = encoder
        .encode(std::slice::from_ref(image))?
        .pop()
        .ok_or_else(|| Error::Internal("the image encoder returned nothing".into()))?
        .vector;
    let images = index
        .nearest(Space::Images, &query, k, ef)?
        .into_iter()
        .map(|hit| ImageHit {
            id: hit.id,
            path: hit
                .record
                .metadata
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            prompt: Some(hit.record.prompt).filter(|p| !p.is_empty()),
            similarity: hit.similarity,
            metadata: hit.record.metadata,
        })
        .collect();
    let mut prompts = Vec::new();
    let note = if !model.text_aligned {
        Some(format!(
            "{} is not text-aligned (an ImageNet model): no cross-modal prompt results; \
             the images' own prompts are shown instead",
            model.name
        ))
    } else {
        prompts = nearest_prompts(index, &query, k, ef)?;
        let stats = index.stats()?;
        let waiting = stats.prompts.saturating_sub(stats.aligned);
        if stats.aligned == 0 && stats.prompts > 0 {
            Some(format!(
                "no prompt is in {}'s space yet: run `promptdex index FOLDER --model {}` to \
                 embed them for cross-modal results",
                model.name, model.name
            ))
        } else if waiting > 0 {
            Some(format!(
                "{waiting} of {} prompts are not yet in {}'s space: prompts added since the last \
                 `promptdex index` (by `import`) join cross-modal results at the next \
                 `promptdex index` run",
                stats.prompts, model.name
            ))
        } else {
            None
        }
    };
    Ok(ImageSearch {
        images,
        prompts,
        note,
    })
}

/// The `k` live prompts nearest to `query` in the cross-modal space, each text once.
fn nearest_prompts(
    index: &dyn IndexRead,
    query: &[f32],
    k: usize,
    ef: usize,
) -> Result<Vec<PromptHit>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(k);
    // Repeated texts are skipped: ask for more, then for more again.
    for wanted in [2 * k + 16, 16 * k + 256] {
        out.clear();
        seen.clear();
        let found = index.nearest(Space::Aligned, query, wanted, ef.max(wanted))?;
        let exhausted = found.len() < wanted;
        for hit in found {
            let prompt = hit.record.prompt;
            if prompt.is_empty() || !seen.insert(prompt.clone()) {
                continue;
            }
            out.push(PromptHit {
                id: hit.id,
                prompt,
                score: hit.similarity,
                bm25_rank: None,
                semantic_rank: Some(out.len() + 1),
                similarity: Some(hit.similarity),
                metadata: hit.record.metadata,
            });
            if out.len() == k {
                return Ok(out);
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(out)
}
