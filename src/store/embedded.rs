//! The embedded backend: [`IndexReader`] and [`IndexWriter`] (one index directory) behind the
//! [`IndexRead`] and [`IndexWrite`] seam.

use std::collections::HashSet;

use serde::Serialize;

use super::backend::{
    AlignBatch, IndexRead, IndexWrite, Location, Near, Space, Stats, Stored, StoredVectors,
};
use super::{
    ImageModel, ImageRecord, IndexReader, IndexWriter, Manifest, NewImage, NewPrompt, SyncReport,
    TextHit, VectorIndex, ALIGNED_GRAPH, IMAGE_GRAPH, TEXT_GRAPH,
};
use crate::{Error, Result};

/// How far an index directory has got, as its derived parts record it: a new value means
/// records were added, withdrawn or indexed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexWatermark {
    /// Next record id the text index has not taken in.
    pub records: u64,
    /// Next withdrawal the text index has not applied.
    pub deletions: u64,
    /// Record id (exclusive) each graph is synced up to: prompts, images, cross-modal
    /// prompts.
    pub graphs: [u64; 3],
    /// The image model the manifest names.
    pub image_model: Option<String>,
}

impl IndexReader {
    /// The graph searched for `space`.
    fn graph(&self, space: Space) -> Option<&VectorIndex> {
        match space {
            Space::Prompts => self.vectors(),
            Space::Images => self.image_vectors(),
            Space::Aligned => self.aligned_vectors(),
        }
    }
}

impl IndexRead for IndexReader {
    fn location(&self) -> &Location {
        &self.location
    }

    fn manifest(&self) -> &Manifest {
        IndexReader::manifest(self)
    }

    fn stats(&self) -> Result<Stats> {
        let manifest = IndexReader::manifest(self);
        let count = |graph: Option<&VectorIndex>| graph.map_or(0, |g| g.len() as u64);
        Ok(Stats {
            location: self.location.to_string(),
            backend: "embedded".into(),
            records: self.text().num_docs(),
            prompts: count(self.vectors()),
            images: count(self.image_vectors()),
            aligned: count(self.aligned_vectors()),
            text_model: manifest.text_model.clone(),
            image_model: manifest.image_model.as_ref().map(|m| m.name.clone()),
            bytes: Some(dir_size(self.dir())),
            generation: Some(self.text().watermark()?.records),
        })
    }

    fn bm25(&self, query: &str, k: usize) -> Result<Vec<TextHit>> {
        self.text().search(query, k)
    }

    /// Withdrawn records (replaced or vanished images) stay in a graph until it is rebuilt,
    /// so more are asked for, and more again, until `k` live ones are found or the graph is
    /// exhausted.
    fn nearest(&self, space: Space, query: &[f32], k: usize, ef: usize) -> Result<Vec<Near>> {
        let Some(graph) = self.graph(space) else {
            return Ok(Vec::new());
        };
        let mut wanted = k + k / 2 + 8;
        loop {
            let wanted_now = wanted.min(graph.len());
            let found = graph.search(query, wanted_now, ef.max(wanted_now))?;
            let mut live = Vec::with_capacity(k);
            for hit in found {
                if let Some((prompt, metadata)) = self.text().get(hit.id)? {
                    live.push(Near {
                        id: hit.id,
                        similarity: hit.similarity,
                        record: Stored { prompt, metadata },
                    });
                    if live.len() == k {
                        return Ok(live);
                    }
                }
            }
            if wanted_now >= graph.len() {
                return Ok(live);
            }
            wanted *= 4;
        }
    }

    fn records(&self, ids: &[u64]) -> Result<Vec<Option<Stored>>> {
        ids.iter()
            .map(|&id| {
                let found = self.text().get(id)?;
                Ok(found.map(|(prompt, metadata)| Stored { prompt, metadata }))
            })
            .collect()
    }

    fn has_vectors(&self, space: Space) -> bool {
        self.graph(space).is_some()
    }

    fn mean_prompt(&self) -> Option<&[f32]> {
        self.vectors().and_then(|g| g.mean())
    }

    fn for_each_prompt(&self, f: &mut dyn FnMut(u64, &str)) -> Result<()> {
        self.text().for_each_prompt(f)
    }

    fn watermark(&self) -> Result<Option<IndexWatermark>> {
        let dir = self.dir();
        let text = self.text().watermark()?;
        let mut graphs = [0; 3];
        for (upto, name) in graphs
            .iter_mut()
            .zip([TEXT_GRAPH, IMAGE_GRAPH, ALIGNED_GRAPH])
        {
            *upto = VectorIndex::synced_upto(&dir.join(name))?;
        }
        let manifest = Manifest::read(dir)?
            .ok_or_else(|| Error::index(dir, "manifest.json has disappeared"))?;
        Ok(Some(IndexWatermark {
            records: text.records,
            deletions: text.deletions,
            graphs,
            image_model: manifest.image_model.map(|m| m.name),
        }))
    }
}

impl IndexWrite for IndexWriter {
    fn location(&self) -> &Location {
        &self.location
    }

    fn manifest(&self) -> &Manifest {
        IndexWriter::manifest(self)
    }

    fn len(&self) -> Result<u64> {
        Ok(self.catalog().len() as u64)
    }

    fn stored_prompts(&self, keys: &[[u8; 32]]) -> Result<HashSet<[u8; 32]>> {
        let catalog = self.catalog();
        let mut stored = HashSet::new();
        for key in keys {
            if catalog.contains_key(key)? {
                stored.insert(*key);
            }
        }
        Ok(stored)
    }

    fn add_prompts(&self, prompts: &[NewPrompt]) -> Result<usize> {
        self.catalog().insert(prompts)
    }

    fn has_images(&self) -> Result<bool> {
        self.catalog().has_images()
    }

    fn set_image_model(&mut self, model: &ImageModel) -> Result<()> {
        IndexWriter::set_image_model(self, model)
    }

    fn image_by_path(&self, path_key: &[u8]) -> Result<Option<(u64, ImageRecord)>> {
        self.catalog().image_by_path(path_key)
    }

    fn image_paths(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        self.catalog().image_paths().collect()
    }

    fn add_images(&self, images: &[NewImage]) -> Result<Vec<u64>> {
        self.catalog().insert_images(images)
    }

    fn update_image(&self, id: u64, record: &ImageRecord, path_key: &[u8]) -> Result<()> {
        self.catalog().update_image(id, record, path_key)
    }

    fn stored_vectors(&self, id: u64) -> Result<StoredVectors> {
        let catalog = self.catalog();
        Ok((
            first_vector(catalog.text_vectors(id, id + 1))?,
            first_vector(catalog.image_vectors(id, id + 1))?,
        ))
    }

    /// The records from the aligned watermark on, in id order; `upto` is the first record
    /// not covered.
    fn unaligned(&self, limit: usize) -> Result<AlignBatch> {
        let catalog = self.catalog();
        let to = catalog.next_id()?;
        let mut batch = AlignBatch {
            upto: to,
            ..AlignBatch::default()
        };
        for item in catalog.range(catalog.aligned_upto()?, to) {
            let (id, record) = item?;
            if let Some(prompt) = record.prompt() {
                batch.prompts.push((id, prompt.to_string()));
                if batch.prompts.len() == limit {
                    batch.upto = id + 1;
                    break;
                }
            }
        }
        batch.last = batch.upto >= to;
        Ok(batch)
    }

    fn add_aligned(&self, vectors: &[(u64, Vec<f32>)], upto: u64) -> Result<()> {
        self.catalog().insert_aligned(vectors, upto)
    }

    /// Counts records (with a prompt or not) past the aligned watermark.
    fn awaiting_alignment(&self) -> Result<u64> {
        let catalog = self.catalog();
        Ok(catalog.next_id()? - catalog.aligned_upto()?)
    }

    fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<SyncReport> {
        IndexWriter::sync(self, progress)
    }
}

/// The vector a single-id range of a catalog tree yields, if any.
fn first_vector(
    mut range: impl Iterator<Item = Result<(u64, Vec<f32>)>>,
) -> Result<Option<Vec<f32>>> {
    range.next().transpose().map(|v| v.map(|(_, v)| v))
}

/// Bytes under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
