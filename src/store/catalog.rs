//! The catalog: sled trees holding every record and its embedding.
//!
//! Trees: `records` (id -> JSON [`PromptRecord`]), `vectors` (id -> little-endian f32s),
//! `keys` (dedup key -> id) and `meta` (`next_id`). A batch of new prompts goes in as one
//! transaction over all four and is flushed before the call returns, so ids are dense,
//! monotonic and never half-written.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::{Error, Result};

const NEXT_ID: &[u8] = b"next_id";

/// A stored prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// The prompt as first seen (trimmed).
    pub prompt: String,
    /// File name of the corpus it came from.
    pub source: String,
    /// Other columns of its corpus row.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// A prompt to add, with its embedding.
#[derive(Debug, Clone)]
pub struct NewPrompt {
    /// The record.
    pub record: PromptRecord,
    /// Its dedup key ([`crate::ingest::dedup_key`]).
    pub key: [u8; 32],
    /// Its unit-length embedding.
    pub vector: Vec<f32>,
}

/// The sled catalog.
pub struct Catalog {
    db: sled::Db,
    records: sled::Tree,
    vectors: sled::Tree,
    keys: sled::Tree,
    meta: sled::Tree,
}

fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn decode_id(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

/// Little-endian bytes of a vector.
pub fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector stored as little-endian bytes.
pub fn vector_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Catalog {
    /// Opens (or creates) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(256 << 20)
            .open()
            .map_err(|e| Error::index(path, format!("cannot open the catalog: {e}")))?;
        Ok(Self {
            records: db.open_tree("records")?,
            vectors: db.open_tree("vectors")?,
            keys: db.open_tree("keys")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// The id the next record will get (= number of records ever stored).
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.meta.get(NEXT_ID)?.map_or(0, |v| decode_id(&v)))
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the catalog holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True when a prompt with this dedup key is stored.
    pub fn contains_key(&self, key: &[u8; 32]) -> Result<bool> {
        Ok(self.keys.contains_key(key)?)
    }

    /// Stores the prompts whose keys are new, atomically, then flushes to disk.
    /// Returns how many were added.
    pub fn insert(&self, prompts: &[NewPrompt]) -> Result<usize> {
        let mut encoded = Vec::with_capacity(prompts.len());
        for p in prompts {
            encoded.push((
                serde_json::to_vec(&p.record)?,
                vector_bytes(&p.vector),
                p.key,
            ));
        }
        let result = (&self.records, &self.vectors, &self.keys, &self.meta).transaction(
            |(records, vectors, keys, meta)| {
                let mut next = meta.get(NEXT_ID)?.map_or(0, |v| decode_id(&v));
                let mut added = 0usize;
                for (record, vector, key) in &encoded {
                    if keys.get(key)?.is_some() {
                        continue;
                    }
                    let id = id_key(next);
                    records.insert(&id, record.as_slice())?;
                    vectors.insert(&id, vector.as_slice())?;
                    keys.insert(key, &id)?;
                    next += 1;
                    added += 1;
                }
                meta.insert(NEXT_ID, &id_key(next))?;
                Ok::<usize, ConflictableTransactionError<()>>(added)
            },
        );
        let added = result.map_err(|e| match e {
            TransactionError::Storage(e) => Error::Sled(e),
            TransactionError::Abort(()) => Error::Invalid("catalog transaction aborted".into()),
        })?;
        self.db.flush()?;
        Ok(added)
    }

    /// The record with this id.
    pub fn get(&self, id: u64) -> Result<Option<PromptRecord>> {
        match self.records.get(id_key(id))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Records with ids in `from..to`, with their vectors, in id order.
    pub fn range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, PromptRecord, Vec<f32>)>> + '_ {
        self.records
            .range(id_key(from)..id_key(to))
            .map(move |item| {
                let (key, value) = item?;
                let id = decode_id(&key);
                let record: PromptRecord = serde_json::from_slice(&value)?;
                let vector = self
                    .vectors
                    .get(&key)?
                    .map(|v| vector_from_bytes(&v))
                    .ok_or_else(|| Error::Invalid(format!("record {id} has no vector")))?;
                Ok((id, record, vector))
            })
    }
}
