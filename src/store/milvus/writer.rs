//! [`MilvusWriter`]: every write an idempotent upsert keyed by the record's stable key.
//!
//! Milvus has no lock and none is taken: several writers (shard workers on several machines)
//! may fill one index at once. Two writers adding the same record write the same row; a
//! worker killed mid-batch is rerun and finds the rows it had written already there.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use milvus::v2::prelude::ConsistencyLevel;
use serde_json::{json, Value};

use super::client::{Milvus, PAGE};
use super::keys::{image_key, in_filter, path_row_key, prompt_key, to_id, to_key};
use super::manifest::{self, PromptSum};
use super::rows::{self, record_row};
use super::schema::{
    self, Names, HAS_TEXT, ID, KIND, MTIME, PATH, PROMPT, RECORD, SIZE, TEXT, UNUSED, VECTOR,
};
use crate::store::{
    path_from_key, AlignBatch, ImageModel, ImageRecord, IndexWrite, Location, Manifest, MilvusUrl,
    NewImage, NewPrompt, Record, StoredVectors, SyncReport,
};
use crate::Result;

/// Only records whose `text` is a real prompt vector.
const WITH_TEXT: &str = "has_text == true";

/// A Milvus index opened for writing.
pub struct MilvusWriter {
    m: Milvus,
    names: Names,
    manifest: Manifest,
    /// This writer's running sum of the prompt vectors it added ([`super::manifest`]).
    sum: Mutex<PromptSum>,
    /// How far [`IndexWrite::unaligned`] has scanned the records (in key order).
    align: Mutex<AlignCursor>,
}

/// The key the aligned scan has passed, committed by [`IndexWrite::add_aligned`], and the key
/// the batch last handed out reached.
#[derive(Default)]
struct AlignCursor {
    committed: Option<i64>,
    pending: Option<i64>,
}

impl MilvusWriter {
    /// Opens (creating its collections when missing) the index `url` names for writing with
    /// the models `expected` names; an index built with other models is refused.
    pub fn open(url: &MilvusUrl, expected: &Manifest) -> Result<Box<dyn IndexWrite>> {
        let m = Milvus::connect(url, ConsistencyLevel::Strong)?;
        let names = Names::new(m.name());
        schema::ensure_manifest(&m, &names, expected.dim)?;
        let manifest = match manifest::read(&m, &names)? {
            Some(found) => {
                found.check_compatible(m.path(), expected)?;
                found
            }
            None => {
                manifest::write(&m, &names, expected)?;
                expected.clone()
            }
        };
        schema::ensure_records(&m, &names, manifest.dim, &manifest.hnsw)?;
        schema::ensure_paths(&m, &names)?;
        let writer = Self {
            sum: Mutex::new(PromptSum::new(manifest.dim)),
            align: Mutex::new(AlignCursor::default()),
            m,
            names,
            manifest,
        };
        if let Some(model) = writer.manifest.image_model.clone() {
            writer.ensure_image_collections(&model)?;
        }
        Ok(Box::new(writer))
    }

    fn ensure_image_collections(&self, model: &ImageModel) -> Result<()> {
        let hnsw = &self.manifest.hnsw;
        schema::ensure_vectors(&self.m, &self.names.images, model.dim, hnsw)?;
        if model.text_aligned {
            schema::ensure_vectors(&self.m, &self.names.aligned, model.dim, hnsw)?;
        }
        Ok(())
    }

    /// The keys among `keys` that `collection` holds.
    fn existing(&self, collection: &str, field: &str, keys: &[i64]) -> Result<HashSet<i64>> {
        let mut found = HashSet::new();
        for page in keys.chunks(PAGE) {
            for row in self
                .m
                .query(collection, &in_filter(field, page), &[ID, field], None)?
            {
                if let Some(key) = row.get(field).and_then(Value::as_i64) {
                    found.insert(key);
                }
            }
        }
        Ok(found)
    }

    /// Adds `vector` to this writer's sum.
    fn sum_add(&self, vectors: &[&[f32]]) -> Result<()> {
        if vectors.is_empty() {
            return Ok(());
        }
        let mut sum = self
            .sum
            .lock()
            .map_err(|_| self.m.fail("a writer thread panicked"))?;
        for v in vectors {
            sum.add(v);
        }
        sum.save(&self.m, &self.names)
    }

    /// Withdraws the records among `keys` that no indexed path refers to any more.
    fn withdraw_orphans(&self, keys: &[i64]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let referenced = self.existing(&self.names.paths, RECORD, keys)?;
        let orphans: Vec<i64> = keys
            .iter()
            .copied()
            .filter(|k| !referenced.contains(k))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        self.m.delete(&self.names.records, &orphans)?;
        for collection in [&self.names.images, &self.names.aligned] {
            if self.m.has_collection(collection)? {
                self.m.delete(collection, &orphans)?;
            }
        }
        Ok(())
    }

    fn has_collection_for_images(&self) -> Result<bool> {
        Ok(self.manifest.image_model.is_some() && self.m.has_collection(&self.names.images)?)
    }
}

/// A row of the paths collection.
fn path_row(path_key: &[u8], record: i64, image: &ImageRecord) -> Value {
    json!({
        ID: path_row_key(path_key),
        PATH: hex::encode(path_key),
        RECORD: record,
        SIZE: image.size as i64,
        MTIME: image.mtime_ns as i64,
        UNUSED: [0.0f32, 0.0],
    })
}

impl IndexWrite for MilvusWriter {
    fn location(&self) -> &Location {
        self.m.location()
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn len(&self) -> Result<u64> {
        self.m.count(&self.names.records, "")
    }

    fn stored_prompts(&self, keys: &[[u8; 32]]) -> Result<HashSet<[u8; 32]>> {
        let ids: Vec<i64> = keys.iter().map(prompt_key).collect();
        let found = self.existing(&self.names.records, ID, &ids)?;
        Ok(keys
            .iter()
            .zip(&ids)
            .filter(|(_, id)| found.contains(id))
            .map(|(key, _)| *key)
            .collect())
    }

    /// Asks which keys are stored, then upserts the others (a batch's repeats once).
    fn add_prompts(&self, prompts: &[NewPrompt]) -> Result<usize> {
        let keys: Vec<i64> = prompts.iter().map(|p| prompt_key(&p.key)).collect();
        let mut seen = self.existing(&self.names.records, ID, &keys)?;
        let mut rows = Vec::new();
        let mut vectors: Vec<&[f32]> = Vec::new();
        for (prompt, key) in prompts.iter().zip(&keys) {
            if !seen.insert(*key) {
                continue;
            }
            let record = Record::Prompt(prompt.record.clone());
            rows.push(record_row(
                *key,
                &record,
                Some(&prompt.vector),
                self.manifest.dim,
            )?);
            vectors.push(&prompt.vector);
        }
        let added = rows.len();
        self.m.upsert(&self.names.records, rows)?;
        self.sum_add(&vectors)?;
        Ok(added)
    }

    fn has_images(&self) -> Result<bool> {
        let filter = format!("{KIND} == \"image\"");
        Ok(!self
            .m
            .query(&self.names.records, &filter, &[ID], Some(1))?
            .is_empty())
    }

    fn set_image_model(&mut self, model: &ImageModel) -> Result<()> {
        if self.manifest.image_model.as_ref() == Some(model) {
            return self.ensure_image_collections(model);
        }
        if self.has_images()? {
            self.manifest.check_image_model(self.m.path(), model)?;
        }
        self.manifest.image_model = Some(model.clone());
        manifest::write(&self.m, &self.names, &self.manifest)?;
        self.ensure_image_collections(model)
    }

    /// The path's row names the record; the record's path, size and mtime are the path's
    /// own (one record may stand for several files with the same content).
    fn image_by_path(&self, path_key: &[u8]) -> Result<Option<(u64, ImageRecord)>> {
        let filter = format!("{ID} == {}", path_row_key(path_key));
        let fields = [ID, PATH, RECORD, SIZE, MTIME];
        let Some(row) = self
            .m
            .query(&self.names.paths, &filter, &fields, Some(1))?
            .pop()
        else {
            return Ok(None);
        };
        if row.get(PATH).and_then(Value::as_str) != Some(hex::encode(path_key).as_str()) {
            return Ok(None);
        }
        let Some(key) = row.get(RECORD).and_then(Value::as_i64) else {
            return Err(self.m.fail(format!(
                "{}: a path row without its record",
                self.names.paths
            )));
        };
        let found = self.m.query(
            &self.names.records,
            &format!("{ID} == {key}"),
            &[ID, RECORD],
            Some(1),
        )?;
        let Some(record) = found.first() else {
            return Ok(None);
        };
        match rows::record(record).map_err(|e| self.m.fail(e))? {
            Record::Image(mut image) => {
                image.path = path_from_key(path_key);
                image.size = row.get(SIZE).and_then(Value::as_i64).unwrap_or(0) as u64;
                image.mtime_ns = row.get(MTIME).and_then(Value::as_i64).unwrap_or(0) as u64;
                image.missing = false;
                Ok(Some((to_id(key), image)))
            }
            Record::Prompt(_) => Ok(None),
        }
    }

    fn image_paths(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut paths = Vec::new();
        let fail = |e: String| self.m.fail(e);
        self.m.scan(
            &self.names.paths,
            "",
            &[ID, PATH, RECORD],
            None,
            &mut |page| {
                for row in page {
                    let path = row.get(PATH).and_then(Value::as_str).unwrap_or("");
                    let bytes =
                        hex::decode(path).map_err(|e| fail(format!("a damaged path: {e}")))?;
                    let record = row.get(RECORD).and_then(Value::as_i64).unwrap_or(0);
                    paths.push((bytes, to_id(record)));
                }
                Ok(true)
            },
        )?;
        Ok(paths)
    }

    /// Upserts the records (keyed by content), their image vectors and their paths; a path
    /// that named another record before leaves that record withdrawn once no path names it.
    fn add_images(&self, images: &[NewImage]) -> Result<Vec<u64>> {
        let keys: Vec<i64> = images
            .iter()
            .map(|i| image_key(&i.record.content_hash))
            .collect();
        let path_keys: Vec<i64> = images.iter().map(|i| path_row_key(&i.path_key)).collect();
        let mut before: HashMap<i64, i64> = HashMap::new();
        for page in path_keys.chunks(PAGE) {
            for row in self
                .m
                .query(&self.names.paths, &in_filter(ID, page), &[ID, RECORD], None)?
            {
                if let (Some(path), Some(record)) = (
                    row.get(ID).and_then(Value::as_i64),
                    row.get(RECORD).and_then(Value::as_i64),
                ) {
                    before.insert(path, record);
                }
            }
        }
        let known = self.existing(&self.names.records, ID, &keys)?;
        let dim = self.manifest.dim;
        let (mut records, mut vectors, mut paths) = (HashMap::new(), HashMap::new(), Vec::new());
        let mut sums: Vec<&[f32]> = Vec::new();
        for (image, key) in images.iter().zip(&keys) {
            let record = Record::Image(image.record.clone());
            let row = record_row(*key, &record, image.text_vector.as_deref(), dim)?;
            if records.insert(*key, row).is_none() && !known.contains(key) {
                sums.extend(image.text_vector.as_deref());
            }
            vectors.insert(*key, json!({ID: *key, VECTOR: image.image_vector}));
            paths.push(path_row(&image.path_key, *key, &image.record));
        }
        self.m
            .upsert(&self.names.records, records.into_values().collect())?;
        self.m
            .upsert(&self.names.images, vectors.into_values().collect())?;
        self.m.upsert(&self.names.paths, paths)?;
        self.sum_add(&sums)?;
        let replaced: Vec<i64> = path_keys
            .iter()
            .zip(&keys)
            .filter_map(|(path, key)| before.get(path).filter(|old| *old != key).copied())
            .collect();
        self.withdraw_orphans(&replaced)?;
        Ok(keys.into_iter().map(to_id).collect())
    }

    /// Same content, so only the path's row changes; a missing file's row is deleted and its
    /// record withdrawn once no other path names it.
    fn update_image(&self, id: u64, record: &ImageRecord, path_key: &[u8]) -> Result<()> {
        let key = to_key(id);
        if record.missing {
            self.m
                .delete(&self.names.paths, &[path_row_key(path_key)])?;
            return self.withdraw_orphans(&[key]);
        }
        self.m
            .upsert(&self.names.paths, vec![path_row(path_key, key, record)])
    }

    fn stored_vectors(&self, id: u64) -> Result<StoredVectors> {
        let filter = format!("{ID} == {}", to_key(id));
        let text = match self
            .m
            .query(&self.names.records, &filter, &[ID, TEXT, HAS_TEXT], Some(1))?
            .pop()
        {
            Some(row) if rows::has_text(&row) => {
                Some(rows::vector(&row, TEXT).map_err(|e| self.m.fail(e))?)
            }
            _ => None,
        };
        let image = match self.has_collection_for_images()? {
            true => match self
                .m
                .query(&self.names.images, &filter, &[ID, VECTOR], Some(1))?
                .pop()
            {
                Some(row) => Some(rows::vector(&row, VECTOR).map_err(|e| self.m.fail(e))?),
                None => None,
            },
            false => None,
        };
        Ok((text, image))
    }

    /// Scans the records with a prompt vector in key order from where the last committed
    /// batch ended, skipping those the aligned collection holds. A new writer starts from
    /// the first key (records aligned already are skipped by one query per page).
    fn unaligned(&self, limit: usize) -> Result<AlignBatch> {
        let mut cursor = self
            .align
            .lock()
            .map_err(|_| self.m.fail("a writer thread panicked"))?;
        let mut batch = AlignBatch::default();
        let mut reached = cursor.committed;
        let mut full = false;
        let aligned = self.m.has_collection(&self.names.aligned)?;
        let fail = |e: String| self.m.fail(e);
        self.m.scan(
            &self.names.records,
            WITH_TEXT,
            &[ID, PROMPT],
            cursor.committed,
            &mut |page| {
                let keys = page
                    .iter()
                    .map(rows::key)
                    .collect::<std::result::Result<Vec<i64>, String>>()
                    .map_err(fail)?;
                let done = match aligned {
                    true => self.existing(&self.names.aligned, ID, &keys)?,
                    false => HashSet::new(),
                };
                for (row, key) in page.iter().zip(keys) {
                    if batch.prompts.len() == limit.max(1) {
                        full = true;
                        return Ok(false);
                    }
                    reached = Some(key);
                    let prompt = rows::prompt(row);
                    if !done.contains(&key) && !prompt.is_empty() {
                        batch.prompts.push((to_id(key), prompt.to_string()));
                    }
                }
                Ok(true)
            },
        )?;
        cursor.pending = reached;
        batch.upto = reached.map_or(0, to_id);
        batch.last = !full;
        Ok(batch)
    }

    /// Upserts the vectors and commits the cursor of the batch [`Self::unaligned`] handed out
    /// (`upto` is that batch's).
    fn add_aligned(&self, vectors: &[(u64, Vec<f32>)], upto: u64) -> Result<()> {
        let _ = upto;
        let rows: Vec<Value> = vectors
            .iter()
            .map(|(id, v)| json!({ID: to_key(*id), VECTOR: v}))
            .collect();
        if !rows.is_empty() {
            self.m.upsert(&self.names.aligned, rows)?;
        }
        let mut cursor = self
            .align
            .lock()
            .map_err(|_| self.m.fail("a writer thread panicked"))?;
        cursor.committed = cursor.pending;
        Ok(())
    }

    /// Records with a prompt vector less the aligned collection's rows.
    fn awaiting_alignment(&self) -> Result<u64> {
        let with_text = self.m.count(&self.names.records, WITH_TEXT)?;
        let aligned = match self.m.has_collection(&self.names.aligned)? {
            true => self.m.count(&self.names.aligned, "")?,
            false => 0,
        };
        Ok(with_text.saturating_sub(aligned))
    }

    /// Flushes every collection of the index (the server indexes in the background).
    fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<SyncReport> {
        let mut collections = vec![
            self.names.records.clone(),
            self.names.paths.clone(),
            self.names.manifest.clone(),
        ];
        for name in [&self.names.images, &self.names.aligned] {
            if self.m.has_collection(name)? {
                collections.push(name.clone());
            }
        }
        progress(&format!("flushing {} collections", collections.len()));
        self.m.flush(&collections)?;
        Ok(SyncReport::default())
    }
}
