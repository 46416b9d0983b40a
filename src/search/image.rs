//! Search by image: the nearest indexed images, and prompts when the encoder shares the
//! prompts' vector space.

use serde::Serialize;
use serde_json::{Map, Value};

use super::text::PromptHit;
use crate::models::image::ImageEncoder;
use crate::store::IndexReader;
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
    /// Nearest corpus prompts (cross-modal), when the encoder is text-aligned.
    pub prompts: Vec<PromptHit>,
    /// Why there are no cross-modal prompts, when there are none.
    pub note: Option<String>,
}

/// Finds the `k` indexed images nearest to `image` (with search breadth `ef`).
pub fn search_by_image(
    index: &IndexReader,
    encoder: &dyn ImageEncoder,
    image: &image::RgbImage,
    k: usize,
    ef: usize,
) -> Result<ImageSearch> {
    let Some(model) = &index.manifest().image_model else {
        return Err(Error::index(
            index.dir(),
            "holds no images; add some with `promptdex index FOLDER`",
        ));
    };
    if model.name != encoder.name() {
        return Err(Error::index(
            index.dir(),
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
        .ok_or_else(|| Error::Invalid("the image encoder returned nothing".into()))?
        .vector;
    let mut images = Vec::with_capacity(k);
    if let Some(graph) = index.image_vectors() {
        // Withdrawn records (changed or vanished files) are still in the graph: ask for more.
        let wanted = k + k / 2 + 8;
        for hit in graph.search(&query, wanted, ef)? {
            let Some((prompt, metadata)) = index.text().get(hit.id)? else {
                continue;
            };
            let path = metadata
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            images.push(ImageHit {
                id: hit.id,
                path,
                prompt: Some(prompt).filter(|p| !p.is_empty()),
                similarity: hit.similarity,
                metadata,
            });
            if images.len() == k {
                break;
            }
        }
    }
    let note = (!model.text_aligned).then(|| {
        format!(
            "{} is not text-aligned (an ImageNet model): no cross-modal prompt results; \
             the images' own prompts are shown instead",
            model.name
        )
    });
    Ok(ImageSearch {
        images,
        prompts: Vec::new(),
        note,
    })
}
