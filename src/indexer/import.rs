//! Importing a prompt corpus.
//!
//! The corpus is streamed in chunks of new prompts. Each chunk is de-duplicated (against the
//! catalog and itself), embedded, and committed to the catalog in one flushed transaction; the
//! text index and the graph are synced from the catalog at the end. A run killed anywhere
//! resumes: committed chunks are recognised as duplicates and skipped without embedding, and
//! the derived indexes catch up from their watermarks.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Shard;
use crate::ingest::{dedup_key, CorpusReader, Row};
use crate::models::TextEmbedder;
use crate::store::{IndexWrite, NewPrompt, PromptRecord};
use crate::Result;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// New prompts embedded and committed together.
    pub chunk: usize,
    /// Rejected rows reported one by one before they are only counted.
    pub max_warnings: usize,
    /// Take only the rows of this shard (`--shard K/N`).
    pub shard: Option<Shard>,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            // Big enough for length-sorted batches to pad little, small enough that a killed
            // run loses under a minute of work.
            chunk: 4096,
            max_warnings: 10,
            shard: None,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Rows read.
    pub rows: u64,
    /// New prompts stored.
    pub added: u64,
    /// Prompts already in the index or repeated in the corpus.
    pub duplicates: u64,
    /// Rows skipped as unusable.
    pub rejected: u64,
    /// Rows left to the other shards.
    pub other_shards: u64,
    /// Records added to the text index.
    pub text_indexed: usize,
    /// Vectors added to the graph.
    pub vectors_indexed: usize,
    /// Records in the index afterwards.
    pub total_records: usize,
    /// Records not yet embedded in the index's text-aligned image model's space (the next
    /// `promptdex index` embeds them); 0 when the index has no such model.
    pub awaiting_alignment: u64,
    /// Wall time.
    pub seconds: f64,
    /// Seconds spent embedding.
    pub embed_seconds: f64,
}

/// Receives progress while an import runs.
pub trait ImportProgress {
    /// Called after each chunk with bytes of the file consumed and its size.
    fn advance(&self, consumed: u64, size: u64, report: &ImportReport);
    /// A line to show the user (a rejected row, a phase change).
    fn message(&self, line: &str);
}

/// Imports the corpus at `path` into `writer` with `embedder`.
pub fn import_corpus(
    writer: &dyn IndexWrite,
    embedder: &dyn TextEmbedder,
    path: &Path,
    config: &ImportConfig,
    progress: &dyn ImportProgress,
) -> Result<ImportReport> {
    let start = Instant::now();
    let reader = CorpusReader::open(path)?;
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut report = ImportReport::default();
    let mut embed_time = Duration::ZERO;
    let mut pending: Vec<(PromptRecord, [u8; 32])> = Vec::with_capacity(config.chunk);
    let mut seen_in_chunk: HashSet<[u8; 32]> = HashSet::new();

    let mut commit = |pending: &mut Vec<(PromptRecord, [u8; 32])>,
                      seen: &mut HashSet<[u8; 32]>,
                      report: &mut ImportReport|
     -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        // One question to the store per chunk (a round trip for a server backend).
        let keys: Vec<[u8; 32]> = pending.iter().map(|(_, key)| *key).collect();
        let stored = writer.stored_prompts(&keys)?;
        if !stored.is_empty() {
            pending.retain(|(_, key)| !stored.contains(key));
            report.duplicates += stored.len() as u64;
        }
        if pending.is_empty() {
            seen.clear();
            return Ok(());
        }
        let texts: Vec<&str> = pending.iter().map(|(r, _)| r.prompt.as_str()).collect();
        let t = Instant::now();
        let vectors = embedder.embed(&texts)?;
        embed_time += t.elapsed();
        let batch: Vec<NewPrompt> = pending
            .drain(..)
            .zip(vectors)
            .map(|((record, key), vector)| NewPrompt {
                record,
                key,
                vector,
            })
            .collect();
        report.added += writer.add_prompts(&batch)? as u64;
        seen.clear();
        Ok(())
    };

    let position = reader.progress_handle();
    let read_all = (|| -> Result<()> {
        for row in reader {
            report.rows += 1;
            match row? {
                Row::Rejected { line, reason } => {
                    report.rejected += 1;
                    if report.rejected as usize <= config.max_warnings {
                        progress.message(&format!(
                            "{}: line {line}: skipped: {reason}",
                            path.display()
                        ));
                    }
                }
                Row::Prompt(entry) => {
                    let key = dedup_key(&entry.prompt);
                    if config.shard.is_some_and(|shard| !shard.owns(&key)) {
                        report.other_shards += 1;
                        continue;
                    }
                    if !seen_in_chunk.insert(key) {
                        report.duplicates += 1;
                        continue;
                    }
                    pending.push((
                        PromptRecord {
                            prompt: entry.prompt,
                            source: source.clone(),
                            metadata: entry.metadata,
                        },
                        key,
                    ));
                    if pending.len() >= config.chunk {
                        commit(&mut pending, &mut seen_in_chunk, &mut report)?;
                        let (consumed, size) = position();
                        progress.advance(consumed, size, &report);
                    }
                }
            }
        }
        commit(&mut pending, &mut seen_in_chunk, &mut report)?;
        let (consumed, size) = position();
        progress.advance(consumed, size, &report);
        Ok(())
    })();
    if report.rejected as usize > config.max_warnings {
        progress.message(&format!(
            "{}: {} rows skipped in all",
            path.display(),
            report.rejected
        ));
    }
    // What was committed before an error is kept and made searchable before reporting it.
    let sync = writer.sync(&mut |line| progress.message(line))?;
    read_all?;
    if report.added == 0 && report.duplicates == 0 && report.other_shards == 0 {
        return Err(crate::Error::input(
            path,
            format!("no usable prompt in {} rows", report.rows),
        ));
    }
    if writer
        .manifest()
        .image_model
        .as_ref()
        .is_some_and(|m| m.text_aligned)
    {
        report.awaiting_alignment = writer.awaiting_alignment()?;
        if report.awaiting_alignment > 0 {
            progress.message(&format!(
                "{} records are not yet in the image model's text space: the next \
                 `promptdex index` run adds them to cross-modal search",
                report.awaiting_alignment
            ));
        }
    }
    report.text_indexed = sync.text_added;
    report.vectors_indexed = sync.vectors_added;
    report.total_records = writer.len()? as usize;
    report.embed_seconds = embed_time.as_secs_f64();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
