//! Store: one index directory holding everything promptdex knows.
//!
//! ```text
//! DIR/manifest.json   format version, text model + checksum, dimension, graph parameters
//! DIR/writer.lock     held by the one process allowed to write
//! DIR/catalog/        sled: every record and its embedding (the source of truth)
//! DIR/text/           tantivy: BM25 over the prompts (derived, rebuildable)
//! DIR/vectors/        hnsw_rs graph over the prompt embeddings (derived, rebuildable)
//! DIR/image-vectors/  hnsw_rs graph over the image embeddings (derived, rebuildable)
//! DIR/aligned-vectors/ hnsw_rs graph over the prompts in the image model's space (derived)
//! ```
//! Derived indexes remember up to which record id they are synced, so a writer killed at any
//! point leaves the catalog consistent and the next writer catches the derived parts up; a
//! writer that finds a derived index damaged rebuilds it from the catalog and says so.
//! Readers use only the derived parts, never take the writer lock and create nothing.
//!
//! **Cross-modal prompts.** When the index's image model is text-aligned (CLIP), every prompt
//! (imported corpus prompts and the prompts embedded in images) is also embedded by the image
//! model's text tower into the catalog's `aligned_vectors`, under its own watermark
//! ([`Catalog::aligned_upto`]), and `aligned-vectors/` is the graph over them, synced by
//! [`IndexWriter::sync`] up to that watermark. The embedding needs the image model, so it is
//! done by `promptdex index` ([`crate::indexer::index_images`] calls
//! [`crate::indexer::align_prompts`] after the images, for every record not yet aligned,
//! whatever added it); `promptdex import` only loads MiniLM, so prompts it adds to such an
//! index wait for the next `promptdex index` (the import says so, and image search notes that
//! the aligned graph is behind). Each aligned chunk is committed with its watermark in one
//! transaction, so a killed run resumes where it stopped.

mod backend;
mod catalog;
mod embedded;
mod lock;
mod manifest;
mod milvus;
mod text;
mod vectors;

pub use backend::{
    open_reader, open_writer, AlignBatch, Fused, IndexRead, IndexWrite, Location, MilvusUrl, Near,
    Space, Stats, Stored, StoredVectors, MAX_MILVUS_NAME,
};
pub use catalog::{
    path_from_key, path_from_metadata, path_key, Catalog, ImageRecord, NewImage, NewPrompt,
    PromptRecord, Record,
};
pub use embedded::IndexWatermark;
pub use lock::WriterLock;
pub use manifest::{HnswParams, ImageModel, Manifest, FORMAT_VERSION, MAX_HNSW_CONNECTIONS};
pub use text::{TextHit, TextIndex, Watermark};
pub use vectors::{dot, exact_search, VectorHit, VectorIndex};

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// An index opened for writing: holds the writer lock for as long as it lives.
pub struct IndexWriter {
    dir: PathBuf,
    location: Location,
    manifest: Manifest,
    catalog: Catalog,
    _lock: WriterLock,
}

/// What [`IndexWriter::sync`] brought up to date.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncReport {
    /// Records added to the text index.
    pub text_added: usize,
    /// Records withdrawn from the text index (replaced or vanished images).
    pub text_withdrawn: usize,
    /// Vectors added to the prompt graph.
    pub vectors_added: usize,
    /// Vectors added to the image graph.
    pub image_vectors_added: usize,
    /// Vectors added to the cross-modal prompt graph.
    pub aligned_vectors_added: usize,
}

/// Folder of the prompt-vector graph.
const TEXT_GRAPH: &str = "vectors";
/// Folder of the image-vector graph.
const IMAGE_GRAPH: &str = "image-vectors";
/// Folder of the graph over prompts embedded in the image model's space.
const ALIGNED_GRAPH: &str = "aligned-vectors";

impl IndexWriter {
    /// Opens the index at `dir` for writing, creating it if needed. `expected` describes the
    /// models the caller will write with; an index built with other models is refused.
    pub fn open(dir: &Path, expected: &Manifest) -> Result<Self> {
        Self::open_with(dir, expected, None)
    }

    /// [`Self::open`], but waits for another writer to finish (telling `waiting` first) when
    /// one is given, instead of failing.
    pub fn open_with(
        dir: &Path,
        expected: &Manifest,
        waiting: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = match waiting {
            Some(tell) => WriterLock::acquire_waiting(dir, tell)?,
            None => WriterLock::acquire(dir)?,
        };
        let manifest = match Manifest::read(dir)? {
            Some(found) => {
                found.check_compatible(dir, expected)?;
                found
            }
            None => {
                expected.write(dir)?;
                expected.clone()
            }
        };
        let catalog = Catalog::open(&dir.join("catalog"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            location: Location::Dir(dir.to_path_buf()),
            manifest,
            catalog,
            _lock: lock,
        })
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest the index was built with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The catalog (source of truth).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Records `model` as the index's image encoder; fails if images from another encoder
    /// are already indexed. (A model recorded while no image was committed, as older builds
    /// did for an empty folder, is replaced.)
    pub fn set_image_model(&mut self, model: &ImageModel) -> Result<()> {
        if self.manifest.image_model.as_ref() == Some(model) {
            return Ok(());
        }
        if self.catalog.has_images()? {
            self.manifest.check_image_model(&self.dir, model)?;
        }
        self.manifest.image_model = Some(model.clone());
        self.manifest.write(&self.dir)
    }

    /// Brings the text index and the vector graphs up to the catalog's last record and
    /// withdrawal (the cross-modal graph up to the catalog's aligned watermark).
    pub fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<SyncReport> {
        let target = Watermark {
            records: self.catalog.next_id()?,
            deletions: self.catalog.next_deletion()?,
        };
        let mut report = SyncReport::default();
        let text = TextIndex::open_for_writer(&self.dir.join("text"), progress)?;
        let from = text.watermark()?;
        if from != target {
            progress(&format!(
                "text index: records {}..{}",
                from.records, target.records
            ));
            (report.text_added, report.text_withdrawn) = text.sync(&self.catalog, target)?;
        }
        report.vectors_added = VectorIndex::sync(
            &self.dir.join(TEXT_GRAPH),
            |a, b| self.catalog.text_vectors(a, b),
            self.manifest.dim,
            target.records,
            &self.manifest.hnsw,
            &mut |line| progress(&format!("prompt graph: {line}")),
        )?;
        if let Some(image) = &self.manifest.image_model {
            report.image_vectors_added = VectorIndex::sync(
                &self.dir.join(IMAGE_GRAPH),
                |a, b| self.catalog.image_vectors(a, b),
                image.dim,
                target.records,
                &self.manifest.hnsw,
                &mut |line| progress(&format!("image graph: {line}")),
            )?;
            if image.text_aligned {
                report.aligned_vectors_added = VectorIndex::sync(
                    &self.dir.join(ALIGNED_GRAPH),
                    |a, b| self.catalog.aligned_vectors(a, b),
                    image.dim,
                    self.catalog.aligned_upto()?,
                    &self.manifest.hnsw,
                    &mut |line| progress(&format!("cross-modal prompt graph: {line}")),
                )?;
            }
        }
        Ok(report)
    }
}

/// An index opened for reading: the text index and the vector graph, no lock taken.
pub struct IndexReader {
    dir: PathBuf,
    location: Location,
    manifest: Manifest,
    text: TextIndex,
    vectors: Option<VectorIndex>,
    image_vectors: Option<VectorIndex>,
    aligned_vectors: Option<VectorIndex>,
    aligned_upto: u64,
}

impl IndexReader {
    /// Opens the index at `dir` for searching; `expected` (when given) must match its models.
    /// Creates nothing (a missing derived index reads as empty); a damaged one is an error
    /// naming the command that rebuilds it.
    pub fn open(dir: &Path, expected: Option<&Manifest>) -> Result<Self> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| {
            Error::index(
                dir,
                "no index here (manifest.json is missing); create one with `promptdex import`",
            )
        })?;
        if let Some(expected) = expected {
            manifest.check_compatible(dir, expected)?;
        }
        let text = TextIndex::open_read_only(&dir.join("text"))?;
        let vectors = VectorIndex::load(&dir.join(TEXT_GRAPH), manifest.dim)?;
        let image_vectors = match &manifest.image_model {
            Some(model) => VectorIndex::load(&dir.join(IMAGE_GRAPH), model.dim)?,
            None => None,
        };
        let (aligned_vectors, aligned_upto) = match &manifest.image_model {
            Some(model) if model.text_aligned => {
                let graph = dir.join(ALIGNED_GRAPH);
                (
                    VectorIndex::load(&graph, model.dim)?,
                    VectorIndex::synced_upto(&graph)?,
                )
            }
            _ => (None, 0),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            location: Location::Dir(dir.to_path_buf()),
            manifest,
            text,
            vectors,
            image_vectors,
            aligned_vectors,
            aligned_upto,
        })
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest the index was built with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The BM25 text index.
    pub fn text(&self) -> &TextIndex {
        &self.text
    }

    /// The prompt-vector graph, if any prompt has been indexed yet.
    pub fn vectors(&self) -> Option<&VectorIndex> {
        self.vectors.as_ref()
    }

    /// The image-vector graph, if any image has been indexed yet.
    pub fn image_vectors(&self) -> Option<&VectorIndex> {
        self.image_vectors.as_ref()
    }

    /// The graph over prompts embedded in the (text-aligned) image model's space, if any.
    pub fn aligned_vectors(&self) -> Option<&VectorIndex> {
        self.aligned_vectors.as_ref()
    }

    /// The record id up to which (exclusive) the cross-modal prompt graph is synced.
    pub fn aligned_upto(&self) -> u64 {
        self.aligned_upto
    }
}
