//! Embedding the catalog's prompts into a text-aligned image model's space (cross-modal search).
//!
//! Every record with a prompt (a corpus prompt, or an image's embedded prompt) that is not yet
//! in the image model's space ([`IndexWrite::unaligned`]) is embedded by the image model's text
//! tower, in chunks; each chunk's vectors and the backend's cursor are committed together
//! ([`IndexWrite::add_aligned`]), so a killed run resumes at the first chunk not committed.
//! The backend makes them searchable at [`IndexWrite::sync`].

use std::time::Instant;

use crate::models::TextEmbedder;
use crate::store::IndexWrite;
use crate::{Error, Result};

/// Prompts embedded and committed together.
const ALIGN_CHUNK: usize = 1024;

/// What [`align_prompts`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlignReport {
    /// Prompts embedded.
    pub embedded: usize,
}

/// Embeds every prompt not yet in the image model's space with `embedder` (the text side of
/// the index's image model, [`crate::models::ImageEncoder::text_embedder`]) and commits them.
/// Does not sync; [`IndexWrite::sync`] does. `progress` gets a line per chunk.
pub fn align_prompts(
    writer: &dyn IndexWrite,
    embedder: &dyn TextEmbedder,
    progress: &mut dyn FnMut(&str),
) -> Result<AlignReport> {
    let Some(model) = &writer.manifest().image_model else {
        return Err(Error::index(
            writer.location().path(),
            "has no image model to align prompts with",
        ));
    };
    let other_weights =
        !embedder.weights_sha256().is_empty() && embedder.weights_sha256() != model.sha256;
    if !model.text_aligned
        || model.name != embedder.name()
        || model.dim != embedder.dim()
        || other_weights
    {
        return Err(Error::index(
            writer.location().path(),
            format!(
                "its image model is {} ({}-d{}); prompts cannot be aligned with {} ({}-d)",
                model.name,
                model.dim,
                if model.text_aligned {
                    ""
                } else {
                    ", not text-aligned"
                },
                embedder.name(),
                embedder.dim()
            ),
        ));
    }
    let mut report = AlignReport::default();
    let waiting = writer.awaiting_alignment()?;
    if waiting == 0 {
        return Ok(report);
    }
    let clock = Instant::now();
    loop {
        let batch = writer.unaligned(ALIGN_CHUNK)?;
        if batch.prompts.is_empty() && batch.last {
            // Records without a prompt may still move the cursor.
            writer.add_aligned(&[], batch.upto)?;
            break;
        }
        let texts: Vec<&str> = batch.prompts.iter().map(|(_, p)| p.as_str()).collect();
        let vectors = embedder.embed(&texts)?;
        let rows: Vec<(u64, Vec<f32>)> = batch
            .prompts
            .iter()
            .map(|(id, _)| *id)
            .zip(vectors)
            .collect();
        writer.add_aligned(&rows, batch.upto)?;
        report.embedded += rows.len();
        let secs = clock.elapsed().as_secs_f64().max(1e-9);
        progress(&format!(
            "prompts in {}'s space: {} of about {waiting} records ({:.0} prompts/s)",
            model.name,
            report.embedded,
            report.embedded as f64 / secs
        ));
        if batch.last {
            break;
        }
    }
    Ok(report)
}
