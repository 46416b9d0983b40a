//! Indexing a folder of images, incrementally.
//!
//! The walk lists candidate files; a file whose path, size and mtime match its record is
//! skipped without being read. Others are read, hashed (blake3) and, when their content is
//! new, their embedded prompt is extracted, the pixels decoded under limits, and a batch is
//! embedded (image encoder, and MiniLM for the prompts) and committed in one transaction. A
//! changed file gets a new record and the old one is withdrawn; a vanished file is marked
//! missing and withdrawn (only files under the walked folder, compared path component by
//! component, and never under a folder the walk could not read). Labels from an
//! `image,prompt` CSV also attach to files already indexed: such a record is replaced by one
//! with the label as its prompt, its image vector copied (only the label is embedded). The
//! image model is recorded in the manifest with the first image committed. Per-file problems
//! are reported with the path and the run goes on.
//! With a text-aligned encoder (CLIP), every prompt not yet in its space is then embedded by
//! its text tower ([`super::align_prompts`]), for cross-modal search.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::Shard;
use crate::ingest::{
    decode_pixels, read_image_file, read_metadata_of, walk_images, DecodeLimits, EmbeddedPrompt,
    ImageFile, Provenance,
};
use crate::models::image::ImageEncoder;
use crate::models::TextEmbedder;
use crate::store::{path_from_key, path_key, ImageModel, ImageRecord, IndexWrite, NewImage};
use crate::{Error, Result};

/// How an image indexing run behaves.
#[derive(Debug, Clone)]
pub struct ImageIndexConfig {
    /// Images decoded and embedded together.
    pub batch: usize,
    /// What one image may cost to read and decode.
    pub decode: DecodeLimits,
    /// Prompts for images that do not carry one, by canonical path (from an `image,prompt`
    /// CSV); they take precedence over embedded prompts.
    pub labels: HashMap<PathBuf, String>,
    /// Take only the files of this shard (`--shard K/N`).
    pub shard: Option<Shard>,
}

impl Default for ImageIndexConfig {
    fn default() -> Self {
        Self {
            // Enough to keep both cores busy decoding while memory stays small.
            batch: 32,
            decode: DecodeLimits::default(),
            labels: HashMap::new(),
            shard: None,
        }
    }
}

/// What an indexing run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageIndexReport {
    /// Image files found.
    pub found: usize,
    /// Other files skipped because of their extension.
    pub skipped_other: usize,
    /// Image files left to the other shards.
    pub other_shards: usize,
    /// Files embedded for the first time.
    pub added: usize,
    /// Files whose content changed and were embedded again.
    pub changed: usize,
    /// Files unchanged since the last run.
    pub unchanged: usize,
    /// Indexed files that are gone and were marked missing.
    pub vanished: usize,
    /// New or changed images that carried a prompt.
    pub with_prompt: usize,
    /// Labels (from [`ImageIndexConfig::labels`]) that set or replaced the prompt of a new,
    /// changed or already indexed image.
    pub labels_applied: usize,
    /// Labels that name no image file found under the folder.
    pub labels_unmatched: Vec<String>,
    /// Prompts (of any record) newly embedded into a text-aligned encoder's space.
    pub prompts_aligned: usize,
    /// Files that could not be indexed, with why.
    pub errors: Vec<(String, String)>,
    /// Files indexed without (part of) their metadata, with why: a chunk that could not be
    /// read, a prompt cut to the limit. The file and the chunk are named.
    pub warnings: Vec<(String, String)>,
    /// Wall time.
    pub seconds: f64,
}

/// Receives progress while images are indexed.
pub trait ImageIndexProgress {
    /// Called when the number of files to process is known.
    fn start(&self, total: usize);
    /// Called after each batch with the number of files processed so far.
    fn advance(&self, done: usize);
    /// A line to show (a file that failed, a phase).
    fn message(&self, line: &str);
}

/// A file read and decoded, ready to embed.
struct Prepared {
    file: ImageFile,
    hash: String,
    image: Option<RgbImage>,
    width: u32,
    height: u32,
    prompt: Option<crate::ingest::EmbeddedPrompt>,
    /// Metadata problems, as lines naming the file and the chunk.
    warnings: Vec<String>,
    replaces: Option<(u64, ImageRecord)>,
}

/// A file to read: new, or changed since its record (given); with its label, if any.
struct Todo {
    file: ImageFile,
    old: Option<(u64, ImageRecord)>,
    label: Option<String>,
}

/// Reads, hashes and decodes one file; `None` image when only its mtime changed.
fn prepare(todo: &Todo, config: &ImageIndexConfig) -> Result<Prepared> {
    let (file, old) = (todo.file.clone(), todo.old.clone());
    let path = file.path.clone();
    config.decode.check_size(&path, file.size)?;
    let bytes = read_image_file(&path, &config.decode)?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    if let Some((_, record)) = &old {
        if record.content_hash == hash && !record.missing {
            return Ok(Prepared {
                width: record.width,
                height: record.height,
                file,
                hash,
                image: None,
                prompt: None,
                warnings: Vec::new(),
                replaces: old,
            });
        }
    }
    let pixels = decode_pixels(&path, &bytes, &config.decode)?;
    let (prompt, warnings) = match &todo.label {
        Some(prompt) => (
            Some(EmbeddedPrompt::new(Provenance::LabelFile, prompt.clone())),
            Vec::new(),
        ),
        None => {
            let mut read = read_metadata_of(&path, &bytes);
            // A prompt hidden in the pixels (NovelAI), only when the file carries no other.
            read.fill_from_pixels(&path, &pixels);
            let warnings = read.warnings.iter().map(ToString::to_string).collect();
            (read.prompt, warnings)
        }
    };
    let image = pixels.into_rgb8();
    Ok(Prepared {
        width: image.width(),
        height: image.height(),
        file,
        hash,
        image: Some(image),
        prompt,
        warnings,
        replaces: old,
    })
}

/// Indexes the images under `root` into `writer`.
pub fn index_images(
    writer: &mut dyn IndexWrite,
    encoder: &dyn ImageEncoder,
    text: &dyn TextEmbedder,
    model: &ImageModel,
    root: &Path,
    config: &ImageIndexConfig,
    progress: &dyn ImageIndexProgress,
) -> Result<ImageIndexReport> {
    let start = Instant::now();
    if !root.is_dir() {
        return Err(Error::input(root, "not a folder"));
    }
    // Absolute paths: the same folder given two ways is the same images.
    let root = &root.canonicalize().map_err(|e| Error::io(root, e))?;
    // Images already embedded by another model cannot be mixed with these; the model itself
    // is recorded with the first image committed, so an empty run pins nothing.
    if writer.has_images()? {
        writer
            .manifest()
            .check_image_model(writer.location().path(), model)?;
    }
    let mut report = ImageIndexReport::default();
    let mut walk = walk_images(root);
    if let Some(shard) = config.shard {
        let before = walk.images.len();
        walk.images
            .retain(|file| shard.owns_path(&path_key(&file.path)));
        report.other_shards = before - walk.images.len();
    }
    report.found = walk.images.len();
    report.skipped_other = walk.skipped;
    let mut unreadable = Vec::new();
    for (path, why) in walk.errors {
        progress.message(&format!("{}: {why}", path.display()));
        report.errors.push((path.display().to_string(), why));
        unreadable.push(path);
    }

    let plan = plan_files(&*writer, walk.images, config, &mut report)?;
    report.vanished = withdraw_vanished(&*writer, root, &plan.seen, &unreadable, config.shard)?;
    let mut refresh = plan.refresh;
    let matched = plan.matched;

    progress.start(plan.todo.len());
    let mut run = Run {
        writer,
        encoder,
        text,
        model,
        config,
        progress,
        done: 0,
    };
    for chunk in plan.todo.chunks(config.batch.max(1)) {
        run.chunk(chunk, &mut refresh, &mut report)?;
    }
    let writer = run.writer;
    for batch in refresh.chunks(config.batch.max(1)) {
        commit_refresh(&*writer, text, batch, &mut report)?;
    }
    report.labels_unmatched = config
        .labels
        .keys()
        .filter(|path| !matched.contains(*path))
        .map(|path| path.display().to_string())
        .collect();
    report.labels_unmatched.sort();

    // A text-aligned encoder also puts every prompt not yet in its space there: the images'
    // own and those imported since the last run.
    if let Some(text_side) = encoder.text_embedder() {
        let aligned =
            super::align_prompts(&*writer, text_side, &mut |line| progress.message(line))?;
        report.prompts_aligned = aligned.embedded;
    }
    writer.sync(&mut |line| progress.message(line))?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// What a run works with, for processing the files to read chunk by chunk.
struct Run<'a> {
    writer: &'a mut dyn IndexWrite,
    encoder: &'a dyn ImageEncoder,
    text: &'a dyn TextEmbedder,
    model: &'a ImageModel,
    config: &'a ImageIndexConfig,
    progress: &'a dyn ImageIndexProgress,
    /// Files processed so far.
    done: usize,
}

impl Run<'_> {
    /// Reads `chunk` in parallel, then commits its new and changed images (recording the
    /// image model first) and updates the records of files only touched; those that also need
    /// a refresh are added to `refresh`.
    fn chunk(
        &mut self,
        chunk: &[Todo],
        refresh: &mut Vec<Refresh>,
        report: &mut ImageIndexReport,
    ) -> Result<()> {
        let config = self.config;
        let prepared: Vec<(&Todo, Result<Prepared>)> = chunk
            .par_iter()
            .map(|todo| (todo, prepare(todo, config)))
            .collect();
        let mut fresh = Vec::new();
        for (todo, item) in prepared {
            let path = &todo.file.path;
            if let Ok(p) = &item {
                for warning in &p.warnings {
                    self.progress.message(&format!("warning: {warning}"));
                    let file = path.display().to_string();
                    report.warnings.push((file, warning.clone()));
                }
            }
            match item {
                Ok(p) if p.image.is_none() => {
                    // Same bytes, new mtime: update the record, keep its embeddings.
                    let (id, mut record) = p.replaces.expect("only known files are touched");
                    record.mtime_ns = p.file.mtime_ns;
                    record.size = p.file.size;
                    let key = path_key(&p.file.path);
                    self.writer.update_image(id, &record, &key)?;
                    report.unchanged += 1;
                    let label = todo.label.as_ref();
                    refresh.extend(Refresh::needed(id, record, &p.file.path, label));
                }
                Ok(p) => fresh.push(p),
                Err(e) => {
                    self.progress.message(&e.to_string());
                    report
                        .errors
                        .push((path.display().to_string(), e.to_string()));
                }
            }
        }
        if !fresh.is_empty() {
            self.writer.set_image_model(self.model)?;
            commit_batch(&*self.writer, self.encoder, self.text, fresh, report)?;
        }
        self.done += chunk.len();
        self.progress.advance(self.done);
        Ok(())
    }
}

/// What a run has to do with the files the walk found.
struct Plan {
    /// Files to read (new, or changed since their record), with their current record.
    todo: Vec<Todo>,
    /// Unchanged files whose record needs rewriting (a new label, a path stored lossily).
    refresh: Vec<Refresh>,
    /// Path keys of every file found.
    seen: HashSet<Vec<u8>>,
    /// Labels whose file the walk found.
    matched: HashSet<PathBuf>,
}

/// Sorts the walked files into unchanged (counted in `report`), to refresh and to read.
fn plan_files(
    writer: &dyn IndexWrite,
    files: Vec<ImageFile>,
    config: &ImageIndexConfig,
    report: &mut ImageIndexReport,
) -> Result<Plan> {
    let mut plan = Plan {
        todo: Vec::new(),
        refresh: Vec::new(),
        seen: HashSet::new(),
        matched: HashSet::new(),
    };
    for file in files {
        let key = path_key(&file.path);
        match writer.image_by_path(&key)? {
            Some((id, r)) if r.size == file.size && r.mtime_ns == file.mtime_ns && !r.missing => {
                report.unchanged += 1;
                let label = label_of(&file.path, config, &mut plan.matched);
                plan.refresh
                    .extend(Refresh::needed(id, r, &file.path, label));
            }
            old => {
                let label = label_of(&file.path, config, &mut plan.matched).cloned();
                plan.todo.push(Todo { file, old, label });
            }
        }
        plan.seen.insert(key);
    }
    Ok(plan)
}

/// The label for the file at `path`, if any (noting that its label matched a file).
fn label_of<'c>(
    path: &Path,
    config: &'c ImageIndexConfig,
    matched: &mut HashSet<PathBuf>,
) -> Option<&'c String> {
    if config.labels.is_empty() {
        return None;
    }
    let canonical = std::fs::canonicalize(path).ok()?;
    let label = config.labels.get(&canonical)?;
    matched.insert(canonical);
    Some(label)
}

/// Marks missing (and withdraws) the records of files under `root` that the walk did not
/// find, except those under a path the walk could not read and, with a `shard`, those of other
/// shards. Returns how many.
fn withdraw_vanished(
    writer: &dyn IndexWrite,
    root: &Path,
    seen: &HashSet<Vec<u8>>,
    unreadable: &[PathBuf],
    shard: Option<Shard>,
) -> Result<usize> {
    let mut gone = Vec::new();
    for (key, id) in writer.image_paths()? {
        if shard.is_some_and(|s| !s.owns_path(&key)) {
            continue;
        }
        // Components, not bytes: `/data/img2/a.png` is not under `/data/img`.
        let path = path_from_key(&key);
        let vanished = path.starts_with(root)
            && !seen.contains(&key)
            && !unreadable.iter().any(|dir| path.starts_with(dir));
        if vanished {
            gone.push((key, id));
        }
    }
    let mut count = 0;
    for (key, id) in gone {
        if let Some((_, mut record)) = writer.image_by_path(&key)?.filter(|(i, _)| *i == id) {
            record.missing = true;
            writer.update_image(id, &record, &key)?;
            count += 1;
        }
    }
    Ok(count)
}

/// An unchanged file whose record is rewritten as a new record (the old one withdrawn), with
/// its image vector copied: to take a label as its prompt, or to store its exact path where
/// an older record held a lossy one.
struct Refresh {
    id: u64,
    record: ImageRecord,
    path: PathBuf,
    label: Option<String>,
}

impl Refresh {
    /// The refresh record `id` needs, if any, given the file's `path` and its label.
    fn needed(id: u64, record: ImageRecord, path: &Path, label: Option<&String>) -> Option<Self> {
        let label = label
            .filter(|l| record.prompt.as_ref() != Some(*l))
            .cloned();
        (label.is_some() || record.path != path).then(|| Self {
            id,
            record,
            path: path.to_path_buf(),
            label,
        })
    }
}

/// Commits refreshed records: labels embedded by MiniLM, every other vector copied.
fn commit_refresh(
    writer: &dyn IndexWrite,
    text: &dyn TextEmbedder,
    batch: &[Refresh],
    report: &mut ImageIndexReport,
) -> Result<()> {
    let labels: Vec<&str> = batch.iter().filter_map(|r| r.label.as_deref()).collect();
    let mut label_vectors = text.embed(&labels)?.into_iter();
    let mut new = Vec::with_capacity(batch.len());
    for refresh in batch {
        let (stored_text, stored_image) = writer.stored_vectors(refresh.id)?;
        let mut record = refresh.record.clone();
        record.path = refresh.path.clone();
        let text_vector = match &refresh.label {
            Some(label) => {
                record.prompt = Some(label.clone());
                record.provenance = provenance_name(Provenance::LabelFile);
                report.labels_applied += 1;
                label_vectors.next()
            }
            None => stored_text,
        };
        let image_vector = stored_image.ok_or_else(|| {
            Error::Internal(format!("image record {} has no image vector", refresh.id))
        })?;
        new.push(NewImage {
            path_key: path_key(&refresh.path),
            record,
            image_vector,
            text_vector,
        });
    }
    writer.add_images(&new)?;
    Ok(())
}

/// How a provenance is named in a record.
fn provenance_name(provenance: Provenance) -> Option<String> {
    serde_json::to_value(provenance)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

fn commit_batch(
    writer: &dyn IndexWrite,
    encoder: &dyn ImageEncoder,
    text: &dyn TextEmbedder,
    batch: Vec<Prepared>,
    report: &mut ImageIndexReport,
) -> Result<()> {
    let images: Vec<RgbImage> = batch.iter().filter_map(|p| p.image.clone()).collect();
    let embeddings = encoder.encode(&images)?;
    let prompts: Vec<&str> = batch
        .iter()
        .filter_map(|p| p.prompt.as_ref().map(|e| e.prompt.as_str()))
        .collect();
    let mut text_vectors = text.embed(&prompts)?.into_iter();
    let mut new = Vec::with_capacity(batch.len());
    for (p, embedding) in batch.into_iter().zip(embeddings) {
        let text_vector = p.prompt.as_ref().and_then(|_| text_vectors.next());
        if p.replaces.is_some() {
            report.changed += 1;
        } else {
            report.added += 1;
        }
        if p.prompt.is_some() {
            report.with_prompt += 1;
        }
        let provenance = p.prompt.as_ref().map(|e| e.provenance);
        if provenance == Some(Provenance::LabelFile) {
            report.labels_applied += 1;
        }
        new.push(NewImage {
            path_key: path_key(&p.file.path),
            record: ImageRecord {
                path: p.file.path.clone(),
                content_hash: p.hash,
                size: p.file.size,
                mtime_ns: p.file.mtime_ns,
                width: p.width,
                height: p.height,
                prompt: p.prompt.as_ref().map(|e| e.prompt.clone()),
                negative_prompt: p.prompt.as_ref().and_then(|e| e.negative_prompt.clone()),
                parameters: p.prompt.map(|e| e.parameters).unwrap_or_default(),
                provenance: provenance.and_then(provenance_name),
                missing: false,
            },
            image_vector: embedding.vector,
            text_vector,
        });
    }
    writer.add_images(&new)?;
    Ok(())
}
