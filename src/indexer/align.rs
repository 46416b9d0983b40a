//! Embedding the catalog's prompts into a text-aligned image model's space (cross-modal search).
//!
//! Every record with a prompt (a corpus prompt, or an image's embedded prompt) from the
//! catalog's aligned watermark on is embedded by the image model's text tower, in chunks; each
//! chunk's vectors and the new watermark are committed in one flushed transaction, so a killed
//! run resumes at the first record not committed. The `aligned-vectors/` graph is then synced
//! by [`IndexWriter::sync`].

use std::time::Instant;

use crate::models::TextEmbedder;
use crate::store::IndexWriter;
use crate::{Error, Result};

/// Prompts embedded and committed together.
const ALIGN_CHUNK: usize = 1024;

/// What [`align_prompts`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlignReport {
    /// Prompts embedded.
    pub embedded: usize,
    /// Records looked at (with or without a prompt).
    pub records: u64,
}

/// Embeds every prompt not yet in the image model's space with `embedder` (the text side of
/// the index's image model, [`crate::models::ImageEncoder::text_embedder`]) and commits them.
/// Does not sync the graph; [`IndexWriter::sync`] does. `progress` gets a line per chunk.
pub fn align_prompts(
    writer: &IndexWriter,
    embedder: &dyn TextEmbedder,
    progress: &mut dyn FnMut(&str),
) -> Result<AlignReport> {
    let Some(model) = &writer.manifest().image_model else {
        return Err(Error::index(
            writer.dir(),
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
            writer.dir(),
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
    let catalog = writer.catalog();
    let to = catalog.next_id()?;
    let start = catalog.aligned_upto()?;
    let mut report = AlignReport::default();
    if start >= to {
        return Ok(report);
    }
    let clock = Instant::now();
    let mut cursor = start;
    while cursor < to {
        // Up to ALIGN_CHUNK prompts from `cursor`; `reached` is the first record not covered.
        let mut batch: Vec<(u64, String)> = Vec::with_capacity(ALIGN_CHUNK);
        let mut reached = to;
        for item in catalog.range(cursor, to) {
            let (id, record) = item?;
            if let Some(prompt) = record.prompt() {
                batch.push((id, prompt.to_string()));
                if batch.len() == ALIGN_CHUNK {
                    reached = id + 1;
                    break;
                }
            }
        }
        let texts: Vec<&str> = batch.iter().map(|(_, p)| p.as_str()).collect();
        let vectors = embedder.embed(&texts)?;
        let rows: Vec<(u64, Vec<f32>)> = batch.iter().map(|(id, _)| *id).zip(vectors).collect();
        catalog.insert_aligned(&rows, reached)?;
        report.embedded += rows.len();
        report.records += reached - cursor;
        cursor = reached;
        let secs = clock.elapsed().as_secs_f64().max(1e-9);
        progress(&format!(
            "prompts in {}'s space: records {}..{} of {to} ({} prompts, {:.0}/s)",
            model.name,
            start,
            cursor,
            report.embedded,
            report.embedded as f64 / secs
        ));
    }
    Ok(report)
}
