//! The full-text index: tantivy, BM25 over the prompt text.
//!
//! Documents carry the record id (indexed, stored, fast), the prompt (tokenised, stored) and
//! the record's metadata (stored JSON), so a reader answers searches without the catalog.
//! Each commit carries as its payload how far the index follows the catalog: the record id
//! and the withdrawal-log position it is synced up to.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tantivy::collector::TopDocs;
use tantivy::query::{QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use super::catalog::Catalog;
use crate::{Error, Result};

/// Memory the writer may use before it flushes a segment.
const WRITER_HEAP: usize = 128 << 20;

/// How far a derived index follows the catalog: records with ids below `records` are in,
/// and withdrawals at log positions below `deletions` are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Next record id not yet indexed.
    pub records: u64,
    /// Next withdrawal-log position not yet applied.
    pub deletions: u64,
}

/// A BM25 hit.
#[derive(Debug, Clone, PartialEq)]
pub struct TextHit {
    /// Record id.
    pub id: u64,
    /// BM25 score.
    pub score: f32,
}

/// The tantivy index of one promptdex index.
pub struct TextIndex {
    dir: std::path::PathBuf,
    index: Index,
    reader: IndexReader,
    id: Field,
    prompt: Field,
    metadata: Field,
}

fn schema() -> Schema {
    let mut builder = Schema::builder();
    builder.add_u64_field("id", INDEXED | STORED | FAST);
    builder.add_text_field("prompt", TEXT | STORED);
    builder.add_text_field("metadata", STORED);
    builder.build()
}

impl TextIndex {
    /// Opens the index in `dir`, creating an empty one if there is none.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| Error::index(dir, format!("text index: {e}")))?;
        let index = Index::open_or_create(directory, schema())
            .map_err(|e| Error::index(dir, format!("text index: {e}")))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let s = index.schema();
        let field = |name: &str| {
            s.get_field(name)
                .map_err(|_| Error::index(dir, format!("text index has no `{name}` field")))
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            id: field("id")?,
            prompt: field("prompt")?,
            metadata: field("metadata")?,
            index,
            reader,
        })
    }

    /// How far the index follows the catalog.
    pub fn watermark(&self) -> Result<Watermark> {
        let metas = self.index.load_metas()?;
        let Some(payload) = metas.payload else {
            return Ok(Watermark::default());
        };
        // Indexes written before withdrawals existed recorded the record count alone.
        if let Ok(records) = payload.trim().parse::<u64>() {
            return Ok(Watermark {
                records,
                deletions: 0,
            });
        }
        serde_json::from_str(&payload)
            .map_err(|e| Error::index(&self.dir, format!("text index watermark is damaged: {e}")))
    }

    /// Adds the catalog's records from the index's watermark up to `target` and withdraws the
    /// records logged as deleted since, in one commit that records `target`.
    /// Returns (documents added, documents withdrawn).
    pub fn sync(&self, catalog: &Catalog, target: Watermark) -> Result<(usize, usize)> {
        let from = self.watermark()?;
        if from == target {
            return Ok((0, 0));
        }
        let mut writer = self
            .index
            .writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP)?;
        let mut added = 0;
        for item in catalog.range(from.records, target.records) {
            let (id, record) = item?;
            // Replaces any copy of the record (from a run that synced without its watermark),
            // so a document is never in the index twice.
            writer.delete_term(Term::from_field_u64(self.id, id));
            writer.add_document(doc!(
                self.id => id,
                self.prompt => record.prompt().unwrap_or_default(),
                self.metadata => serde_json::to_string(&record.metadata())?,
            ))?;
            added += 1;
        }
        let withdrawn = catalog.deletions(from.deletions, target.deletions)?;
        for id in &withdrawn {
            writer.delete_term(Term::from_field_u64(self.id, *id));
        }
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(&target)?);
        prepared.commit()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok((added, withdrawn.len()))
    }

    /// Number of documents visible to searches.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The best `k` records for `query` by BM25. Query syntax errors are forgiven: SD prompts
    /// are full of parentheses and colons.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<TextHit>> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut parser = QueryParser::for_index(&self.index, vec![self.prompt]);
        parser.set_conjunction_by_default();
        let searcher = self.reader.searcher();
        let mut hits = self.run(&searcher, &parser, query, k)?;
        if hits.is_empty() {
            // Nothing has every term: fall back to any term.
            let parser = QueryParser::for_index(&self.index, vec![self.prompt]);
            hits = self.run(&searcher, &parser, query, k)?;
        }
        Ok(hits)
    }

    fn run(
        &self,
        searcher: &tantivy::Searcher,
        parser: &QueryParser,
        query: &str,
        k: usize,
    ) -> Result<Vec<TextHit>> {
        let (parsed, _errors) = parser.parse_query_lenient(query);
        let top = searcher.search(&parsed, &TopDocs::with_limit(k))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.id).and_then(|v| v.as_u64()) {
                hits.push(TextHit { id, score });
            }
        }
        Ok(hits)
    }

    /// Calls `f` with the record id and stored prompt of every live document, segment by
    /// segment.
    pub fn for_each_prompt(&self, f: &mut dyn FnMut(u64, &str)) -> Result<()> {
        let searcher = self.reader.searcher();
        for segment in searcher.segment_readers() {
            let store = segment
                .get_store_reader(1)
                .map_err(tantivy::TantivyError::from)?;
            for doc in store.iter::<TantivyDocument>(segment.alive_bitset()) {
                let doc = doc?;
                let id = doc.get_first(self.id).and_then(|v| v.as_u64());
                let prompt = doc.get_first(self.prompt).and_then(|v| v.as_str());
                if let (Some(id), Some(prompt)) = (id, prompt) {
                    f(id, prompt);
                }
            }
        }
        Ok(())
    }

    /// The stored prompt and metadata of a record.
    pub fn get(&self, id: u64) -> Result<Option<(String, Map<String, Json>)>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(Term::from_field_u64(self.id, id), IndexRecordOption::Basic);
        let top = searcher.search(&query, &TopDocs::with_limit(1))?;
        let Some((_, address)) = top.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(*address)?;
        let prompt = doc
            .get_first(self.prompt)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let metadata = doc
            .get_first(self.metadata)
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        Ok(Some((prompt, metadata)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_damaged_watermarks() {
        let dir = tempfile::tempdir().unwrap();
        let text = TextIndex::open_or_create(dir.path()).unwrap();
        assert_eq!(text.watermark().unwrap(), Watermark::default());
        let commit = |payload: &str| {
            let mut writer = text
                .index
                .writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP)
                .unwrap();
            let mut prepared = writer.prepare_commit().unwrap();
            prepared.set_payload(payload);
            prepared.commit().unwrap();
        };
        commit("100000");
        assert_eq!(
            text.watermark().unwrap(),
            Watermark {
                records: 100_000,
                deletions: 0
            }
        );
        commit("{not json");
        let err = text.watermark().unwrap_err().to_string();
        assert!(err.contains("watermark is damaged"), "{err}");
    }
}
