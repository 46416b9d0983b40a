//! The full-text index: tantivy, BM25 over the prompt text.
//!
//! Documents carry the record id (indexed, stored, fast), the prompt (tokenised, stored) and
//! the record's metadata (stored JSON), so a reader answers searches without the catalog.
//! Each commit carries as its payload how far the index follows the catalog: the record id
//! and the withdrawal-log position it is synced up to.
//!
//! The index is derived from the catalog: a writer that cannot open it, read its watermark or
//! verify its files' checksums rebuilds it from the catalog and says so
//! ([`TextIndex::open_for_writer`]); a reader ([`TextIndex::open_read_only`]) creates nothing
//! and reports damage with the command that rebuilds it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::catalog::Catalog;
use crate::ingest::dedup_key;
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
    /// True when the record's prompt is the query itself (up to case and spacing).
    pub exact: bool,
}

/// The tantivy index of one promptdex index.
pub struct TextIndex {
    dir: std::path::PathBuf,
    index: Index,
    reader: IndexReader,
    id: Field,
    prompt: Field,
    metadata: Field,
    /// The prompt's de-duplication key (hex), so the query's own text is found exactly;
    /// absent in indexes written before it was kept (a writer rebuilds those).
    exact: Option<Field>,
}

/// The `exact` field's value for a prompt: its de-duplication key, hex.
fn exact_key(prompt: &str) -> String {
    hex::encode(dedup_key(prompt))
}

fn schema() -> Schema {
    let mut builder = Schema::builder();
    builder.add_u64_field("id", INDEXED | STORED | FAST);
    builder.add_text_field("prompt", TEXT | STORED);
    builder.add_text_field("metadata", STORED);
    builder.add_text_field("exact", STRING);
    builder.build()
}

/// What a reader is told to do about a damaged text index.
const REBUILD_HINT: &str =
    "run `promptdex import` or `promptdex index` on this index to rebuild it from the catalog";

impl TextIndex {
    /// Opens the index in `dir`, creating an empty one if there is none.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| Error::index(dir, format!("text index: {e}")))?;
        let index = Index::open_or_create(directory, schema())
            .map_err(|e| Error::index(dir, format!("text index: {e}")))?;
        Self::with_index(dir, index)
    }

    /// Opens the index in `dir` for a writer: one that cannot be opened, whose watermark
    /// cannot be read or whose files fail their checksums is deleted and created afresh (empty,
    /// so the next [`TextIndex::sync`] refills it from the catalog), and `progress` is told.
    pub fn open_for_writer(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<Self> {
        match Self::open_or_create(dir).and_then(Self::checked) {
            Ok(text) => Ok(text),
            Err(e) => {
                progress(&format!("{e}: rebuilding it from the catalog"));
                match std::fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(dir, e))
                    }
                    _ => {}
                }
                Self::open_or_create(dir)
            }
        }
    }

    /// Opens the index in `dir` for searching without creating or changing anything: a
    /// missing folder reads as an empty index (nothing synced yet); one that cannot be opened,
    /// or whose files fail their checksums, is an error naming the command that rebuilds it.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        if !dir.exists() {
            return Self::with_index(dir, Index::create_in_ram(schema()));
        }
        let mut attempts = 0;
        loop {
            match Self::open_existing(dir).and_then(Self::checked) {
                Ok(text) => return Ok(text),
                // A writer committing meanwhile may have replaced files under the check: look
                // again before calling the index damaged.
                Err(_) if attempts < 2 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(Error::index(
                        dir,
                        format!("text index cannot be read ({e}); {REBUILD_HINT}"),
                    ))
                }
            }
        }
    }

    fn open_existing(dir: &Path) -> Result<Self> {
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| Error::index(dir, format!("text index: {e}")))?;
        let index = Index::open(directory)?;
        Self::with_index(dir, index)
    }

    /// `self` if its watermark reads and its files pass their checksums.
    fn checked(self) -> Result<Self> {
        self.watermark()?;
        let mut damaged: Vec<String> = self
            .index
            .validate_checksum()?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if !damaged.is_empty() {
            damaged.sort();
            return Err(Error::index(
                &self.dir,
                format!(
                    "text index files fail their checksums: {}",
                    damaged.join(", ")
                ),
            ));
        }
        Ok(self)
    }

    fn with_index(dir: &Path, index: Index) -> Result<Self> {
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
            exact: s.get_field("exact").ok(),
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

    /// A writer, after removing the files a killed commit left behind (written, but never
    /// named by `meta.json`): a rerun of the same changes would write the same file names,
    /// which tantivy refuses ("File already exists").
    fn writer(&self) -> Result<IndexWriter<TantivyDocument>> {
        let writer = self
            .index
            .writer_with_num_threads::<TantivyDocument>(1, WRITER_HEAP)?;
        writer.garbage_collect_files().wait()?;
        Ok(writer)
    }

    /// Adds the catalog's records from the index's watermark up to `target` and withdraws the
    /// records logged as deleted since, in one commit that records `target`.
    /// Returns (documents added, documents withdrawn).
    pub fn sync(&self, catalog: &Catalog, target: Watermark) -> Result<(usize, usize)> {
        let from = self.watermark()?;
        if from == target {
            return Ok((0, 0));
        }
        let mut writer = self.writer()?;
        let mut added = 0;
        for item in catalog.range(from.records, target.records) {
            let (id, record) = item?;
            // Replaces any copy of the record (from a run that synced without its watermark),
            // so a document is never in the index twice.
            writer.delete_term(Term::from_field_u64(self.id, id));
            let prompt = record.prompt().unwrap_or_default();
            let mut document = doc!(
                self.id => id,
                self.prompt => prompt,
                self.metadata => serde_json::to_string(&record.metadata())?,
            );
            if let (Some(exact), false) = (self.exact, prompt.is_empty()) {
                document.add_text(exact, exact_key(prompt));
            }
            writer.add_document(document)?;
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

    /// The record ids of every live document, in index order (each id as often as it is
    /// indexed: a sound index has each once). For checking the index against the catalog.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut ids = Vec::with_capacity(searcher.num_docs() as usize);
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().u64("id")?;
            for doc in segment.doc_ids_alive() {
                ids.extend(column.values_for_doc(doc));
            }
        }
        Ok(ids)
    }

    /// True when the record `id` is in the index and not withdrawn.
    pub fn contains(&self, id: u64) -> Result<bool> {
        let query = TermQuery::new(Term::from_field_u64(self.id, id), IndexRecordOption::Basic);
        Ok(self.reader.searcher().search(&query, &Count)? > 0)
    }

    /// The best `k` records for `query` by BM25: any of the words the prompt field's analyzer
    /// finds in `query`, scored together. The text is never read as query syntax, so the
    /// parentheses, colons, quotes, `+` and ` - ` of SD prompts are just text. Records whose
    /// prompt is the query itself (up to case and spacing) come first, with their BM25 score:
    /// BM25 alone can rank a shorter or more repetitive prompt above the exact one.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<TextHit>> {
        let terms = self.terms(query)?;
        if k == 0 || terms.is_empty() {
            return Ok(Vec::new());
        }
        let words = || -> Vec<(Occur, Box<dyn Query>)> {
            terms
                .iter()
                .map(|term| {
                    let query = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
                    (Occur::Should, Box::new(query) as Box<dyn Query>)
                })
                .collect()
        };
        let searcher = self.reader.searcher();
        let mut hits = match self.exact {
            Some(exact) => {
                // The exact records, scored by the words alone (the key's own score is zeroed).
                let key = TermQuery::new(
                    Term::from_field_text(exact, &exact_key(query)),
                    IndexRecordOption::Basic,
                );
                let mut clauses = words();
                clauses.push((Occur::Must, Box::new(BoostQuery::new(Box::new(key), 0.0))));
                let mut exact = self.top(&searcher, &BooleanQuery::new(clauses), k)?;
                exact.iter_mut().for_each(|h| h.exact = true);
                exact
            }
            None => Vec::new(),
        };
        let first: std::collections::HashSet<u64> = hits.iter().map(|h| h.id).collect();
        let rest = self.top(&searcher, &BooleanQuery::new(words()), k + first.len())?;
        hits.extend(rest.into_iter().filter(|h| !first.contains(&h.id)));
        hits.truncate(k);
        Ok(hits)
    }

    fn top(
        &self,
        searcher: &tantivy::Searcher,
        query: &dyn Query,
        k: usize,
    ) -> Result<Vec<TextHit>> {
        let top = searcher.search(query, &TopDocs::with_limit(k))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.id).and_then(|v| v.as_u64()) {
                hits.push(TextHit {
                    id,
                    score,
                    exact: false,
                });
            }
        }
        Ok(hits)
    }

    /// The prompt field's terms in `text`, as its analyzer cuts them (repeats kept: a word
    /// said twice weighs twice).
    fn terms(&self, text: &str) -> Result<Vec<Term>> {
        let mut analyzer = self.index.tokenizer_for_field(self.prompt)?;
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        stream.process(&mut |token| terms.push(Term::from_field_text(self.prompt, &token.text)));
        Ok(terms)
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

    #[test]
    fn a_commit_killed_before_its_meta_switch_does_not_block_the_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let text = TextIndex::open_or_create(dir.path()).unwrap();
        let mut writer = text.writer().unwrap();
        for id in [1u64, 2] {
            writer.add_document(doc!(text.id => id)).unwrap();
        }
        writer.commit().unwrap();
        drop(writer);
        // The kill: the deletion's files are written, `meta.json` still names the old commit.
        let meta = dir.path().join("meta.json");
        let before = std::fs::read(&meta).unwrap();
        let withdraw = |text: &TextIndex| {
            let mut writer = text.writer()?;
            writer.delete_term(Term::from_field_u64(text.id, 1));
            writer.commit()?;
            Ok::<_, Error>(())
        };
        withdraw(&text).unwrap();
        std::fs::write(&meta, before).unwrap();
        let text = TextIndex::open_or_create(dir.path()).unwrap();
        withdraw(&text).unwrap();
    }
}
