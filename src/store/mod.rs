//! Store: one index directory holding everything promptdex knows.
//!
//! ```text
//! DIR/manifest.json   format version, text model + checksum, dimension
//! DIR/writer.lock     held by the one process allowed to write
//! DIR/catalog/        sled: every record and its embedding (the source of truth)
//! DIR/text/           tantivy: BM25 over the prompts (derived, rebuildable)
//! DIR/vectors/        hnsw_rs graph over the embeddings (derived, rebuildable)
//! ```
//! Derived indexes remember up to which record id they are synced, so a writer killed at any
//! point leaves the catalog consistent and the next writer catches the derived parts up.
//! Readers use only the derived parts and never take the writer lock.

mod catalog;
mod lock;
mod manifest;
mod text;
mod vectors;

pub use catalog::{Catalog, NewPrompt, PromptRecord};
pub use lock::WriterLock;
pub use manifest::{Manifest, FORMAT_VERSION};
pub use text::{TextHit, TextIndex};
pub use vectors::{exact_search, VectorHit, VectorIndex};

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// An index opened for writing: holds the writer lock for as long as it lives.
pub struct IndexWriter {
    dir: PathBuf,
    manifest: Manifest,
    catalog: Catalog,
    _lock: WriterLock,
}

/// What [`IndexWriter::sync`] brought up to date.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncReport {
    /// Records added to the text index.
    pub text_added: usize,
    /// Vectors added to the graph.
    pub vectors_added: usize,
}

impl IndexWriter {
    /// Opens the index at `dir` for writing, creating it if needed. `expected` describes the
    /// models the caller will write with; an index built with other models is refused.
    pub fn open(dir: &Path, expected: &Manifest) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = WriterLock::acquire(dir)?;
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

    /// Brings the text index and the vector graph up to the catalog's last record.
    pub fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<SyncReport> {
        let next_id = self.catalog.next_id()?;
        let mut report = SyncReport::default();
        let text = TextIndex::open_or_create(&self.dir.join("text"))?;
        let text_from = text.synced_upto()?;
        if text_from < next_id {
            progress(&format!(
                "text index: adding records {text_from}..{next_id}"
            ));
            report.text_added = text.add_from(&self.catalog, text_from, next_id)?;
        }
        let vectors_dir = self.dir.join("vectors");
        let vectors_from = VectorIndex::synced_upto(&vectors_dir)?;
        if vectors_from < next_id {
            progress(&format!(
                "vector graph: adding records {vectors_from}..{next_id}"
            ));
            report.vectors_added =
                VectorIndex::extend(&vectors_dir, &self.catalog, self.manifest.dim, next_id)?;
        }
        Ok(report)
    }
}

/// An index opened for reading: the text index and the vector graph, no lock taken.
pub struct IndexReader {
    dir: PathBuf,
    manifest: Manifest,
    text: TextIndex,
    vectors: Option<VectorIndex>,
}

impl IndexReader {
    /// Opens the index at `dir` for searching; `expected` (when given) must match its models.
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
        let text = TextIndex::open_or_create(&dir.join("text"))?;
        let vectors = VectorIndex::load(&dir.join("vectors"), manifest.dim)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            text,
            vectors,
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

    /// The vector graph, if any record has been indexed yet.
    pub fn vectors(&self) -> Option<&VectorIndex> {
        self.vectors.as_ref()
    }
}
