//! The catalog: sled trees holding every record and its embeddings.
//!
//! Trees: `records` (id -> JSON [`Record`]), `vectors` (id -> MiniLM vector of the record's
//! prompt, little-endian f32s), `image_vectors` (id -> image embedding), `aligned_vectors`
//! (id -> the record's prompt embedded by a text-aligned image model's text tower, in the image
//! space), `keys` (prompt dedup key -> id), `paths` (image path -> id of its current record),
//! `deleted` (sequence -> id of a record withdrawn from search) and `meta` (`next_id`,
//! `next_deletion`, `aligned_next`). Every batch goes in as one transaction and is flushed
//! before the call returns, so ids are dense, monotonic and never half-written, and the derived
//! indexes can follow both logs by watermark. `aligned_next` is the watermark of
//! `aligned_vectors`: every record below it that has a prompt has its aligned vector (they are
//! computed after the records, by [`crate::indexer::align_prompts`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::{Error, Result};

const NEXT_ID: &[u8] = b"next_id";
const NEXT_DELETION: &[u8] = b"next_deletion";
const ALIGNED_NEXT: &[u8] = b"aligned_next";

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

/// A stored image (its current version: a changed file gets a new record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Path as indexed, byte for byte (file names need not be UTF-8). Stored as a JSON
    /// string when it is UTF-8 (as every record written before this field could hold
    /// anything else), else as `{"bytes_hex": ...}`.
    #[serde(with = "stored_path")]
    pub path: PathBuf,
    /// blake3 of the file's bytes, hex.
    pub content_hash: String,
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: u64,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// The prompt embedded in the file (or its sidecar), if any.
    pub prompt: Option<String>,
    /// The embedded negative prompt, if any.
    pub negative_prompt: Option<String>,
    /// Generation parameters (steps, sampler, seed, ...).
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Where the prompt came from (e.g. `a1111-parameters`, `sidecar`).
    pub provenance: Option<String>,
    /// True once the file has vanished from disk.
    #[serde(default)]
    pub missing: bool,
}

/// Any stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A prompt from a corpus.
    Prompt(PromptRecord),
    /// An indexed image.
    Image(ImageRecord),
}

/// Reads a stored record. Prompt records written before images were indexed carry no `kind`
/// tag; they are still read as prompts.
fn decode_record(bytes: &[u8]) -> Result<Record> {
    match serde_json::from_slice::<Record>(bytes) {
        Ok(record) => Ok(record),
        Err(tagged) => serde_json::from_slice::<PromptRecord>(bytes)
            .map(Record::Prompt)
            .map_err(|_| tagged.into()),
    }
}

impl Record {
    /// The prompt text, if the record has one.
    pub fn prompt(&self) -> Option<&str> {
        match self {
            Record::Prompt(p) => Some(&p.prompt),
            Record::Image(i) => i.prompt.as_deref(),
        }
    }

    /// What search results show beside the prompt: the corpus columns of a prompt, or the
    /// path, size and generation parameters of an image; `kind` says which.
    pub fn metadata(&self) -> Map<String, Value> {
        match self {
            Record::Prompt(p) => {
                let mut m = p.metadata.clone();
                m.insert("kind".into(), "prompt".into());
                m.insert("source".into(), p.source.clone().into());
                m
            }
            Record::Image(i) => {
                let mut m = Map::new();
                m.insert("kind".into(), "image".into());
                m.insert("path".into(), i.path.to_string_lossy().into_owned().into());
                if let Some(hex) = stored_path::hex_if_not_utf8(&i.path) {
                    m.insert(PATH_BYTES_HEX.into(), hex.into());
                }
                m.insert("content_hash".into(), i.content_hash.clone().into());
                m.insert("width".into(), i.width.into());
                m.insert("height".into(), i.height.into());
                if let Some(n) = &i.negative_prompt {
                    m.insert("negative_prompt".into(), n.clone().into());
                }
                if let Some(p) = &i.provenance {
                    m.insert("prompt_source".into(), p.clone().into());
                }
                if !i.parameters.is_empty() {
                    m.insert("parameters".into(), Value::Object(i.parameters.clone()));
                }
                m
            }
        }
    }
}

/// An image to add, with its embeddings.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// The record.
    pub record: ImageRecord,
    /// Key of its path in the `paths` tree ([`path_key`]).
    pub path_key: Vec<u8>,
    /// The image encoder's unit vector.
    pub image_vector: Vec<f32>,
    /// MiniLM vector of its prompt, when it has one.
    pub text_vector: Option<Vec<f32>>,
}

/// Metadata key holding the hex of an image path's bytes when they are not UTF-8 (the
/// `path` key then holds a lossy rendering for display).
const PATH_BYTES_HEX: &str = "path_bytes_hex";

/// The file of an image record, from the metadata [`Record::metadata`] gives it (as readers
/// get it back from the text index): exact even when the name is not UTF-8.
pub fn path_from_metadata(metadata: &Map<String, Value>) -> Option<PathBuf> {
    if let Some(hex) = metadata.get(PATH_BYTES_HEX).and_then(Value::as_str) {
        return stored_path::from_hex(hex);
    }
    metadata
        .get("path")
        .and_then(Value::as_str)
        .map(PathBuf::from)
}

/// How [`ImageRecord::path`] is stored: a string when the path is UTF-8, else its bytes.
mod stored_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes { bytes_hex: String },
    }

    /// The hex of the path's bytes when they are not UTF-8.
    pub fn hex_if_not_utf8(path: &Path) -> Option<String> {
        if path.to_str().is_some() {
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            Some(hex::encode(path.as_os_str().as_bytes()))
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// The path whose bytes `hex` holds.
    pub fn from_hex(hex: &str) -> Option<PathBuf> {
        let bytes = hex::decode(hex).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
        }
        #[cfg(not(unix))]
        {
            String::from_utf8(bytes).ok().map(PathBuf::from)
        }
    }

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        match hex_if_not_utf8(path) {
            Some(bytes_hex) => Repr::Bytes { bytes_hex }.serialize(s),
            None => Repr::Text(path.to_string_lossy().into_owned()).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(text) => Ok(PathBuf::from(text)),
            Repr::Bytes { bytes_hex } => from_hex(&bytes_hex)
                .ok_or_else(|| serde::de::Error::custom("path bytes are not hex")),
        }
    }
}

/// The path a key of the `paths` tree names (the inverse of [`path_key`]).
pub fn path_from_key(key: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(key))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(key).into_owned())
    }
}

/// The key of a path in the `paths` tree: its raw bytes (file names need not be UTF-8).
pub fn path_key(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().as_bytes().to_vec()
    }
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
    image_vectors: sled::Tree,
    aligned_vectors: sled::Tree,
    keys: sled::Tree,
    paths: sled::Tree,
    deleted: sled::Tree,
    meta: sled::Tree,
}

fn storage_error(e: TransactionError<()>) -> Error {
    match e {
        TransactionError::Storage(e) => Error::Sled(e),
        TransactionError::Abort(()) => Error::Internal("catalog transaction aborted".into()),
    }
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
            image_vectors: db.open_tree("image_vectors")?,
            aligned_vectors: db.open_tree("aligned_vectors")?,
            keys: db.open_tree("keys")?,
            paths: db.open_tree("paths")?,
            deleted: db.open_tree("deleted")?,
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
                serde_json::to_vec(&Record::Prompt(p.record.clone()))?,
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
        let added = result.map_err(storage_error)?;
        self.db.flush()?;
        Ok(added)
    }

    /// Stores new images (each replacing, when its path was indexed before, the previous
    /// record of that path, which is withdrawn from search), atomically, then flushes.
    /// Returns the new ids in order.
    pub fn insert_images(&self, images: &[NewImage]) -> Result<Vec<u64>> {
        let mut encoded = Vec::with_capacity(images.len());
        for i in images {
            encoded.push((
                serde_json::to_vec(&Record::Image(i.record.clone()))?,
                vector_bytes(&i.image_vector),
                i.text_vector.as_deref().map(vector_bytes),
                i.path_key.clone(),
            ));
        }
        let trees = (
            &self.records,
            &self.vectors,
            &self.image_vectors,
            &self.paths,
            &self.deleted,
            &self.meta,
        );
        let ids = trees
            .transaction(|(records, vectors, image_vectors, paths, deleted, meta)| {
                let mut next = meta.get(NEXT_ID)?.map_or(0, |v| decode_id(&v));
                let mut next_del = meta.get(NEXT_DELETION)?.map_or(0, |v| decode_id(&v));
                let mut ids = Vec::with_capacity(encoded.len());
                for (record, image_vector, text_vector, path) in &encoded {
                    let id = id_key(next);
                    if let Some(old) = paths.get(path.as_slice())? {
                        deleted.insert(&id_key(next_del), old)?;
                        next_del += 1;
                    }
                    records.insert(&id, record.as_slice())?;
                    image_vectors.insert(&id, image_vector.as_slice())?;
                    if let Some(v) = text_vector {
                        vectors.insert(&id, v.as_slice())?;
                    }
                    paths.insert(path.as_slice(), &id)?;
                    ids.push(next);
                    next += 1;
                }
                meta.insert(NEXT_ID, &id_key(next))?;
                meta.insert(NEXT_DELETION, &id_key(next_del))?;
                Ok::<Vec<u64>, ConflictableTransactionError<()>>(ids)
            })
            .map_err(storage_error)?;
        self.db.flush()?;
        Ok(ids)
    }

    /// Rewrites an image record in place (same file content: new mtime, or marked missing).
    /// A record marked missing is also withdrawn from search.
    pub fn update_image(&self, id: u64, record: &ImageRecord, path_key: &[u8]) -> Result<()> {
        let bytes = serde_json::to_vec(&Record::Image(record.clone()))?;
        (&self.records, &self.paths, &self.deleted, &self.meta)
            .transaction(|(records, paths, deleted, meta)| {
                records.insert(&id_key(id), bytes.as_slice())?;
                if record.missing {
                    let next_del = meta.get(NEXT_DELETION)?.map_or(0, |v| decode_id(&v));
                    deleted.insert(&id_key(next_del), &id_key(id))?;
                    meta.insert(NEXT_DELETION, &id_key(next_del + 1))?;
                    paths.remove(path_key)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(storage_error)?;
        self.db.flush()?;
        Ok(())
    }

    /// The current record of the image at `path_key`.
    pub fn image_by_path(&self, path_key: &[u8]) -> Result<Option<(u64, ImageRecord)>> {
        let Some(id) = self.paths.get(path_key)? else {
            return Ok(None);
        };
        let id = decode_id(&id);
        match self.get(id)? {
            Some(Record::Image(image)) => Ok(Some((id, image))),
            _ => Ok(None),
        }
    }

    /// Every indexed image path with the id of its current record.
    pub fn image_paths(&self) -> impl Iterator<Item = Result<(Vec<u8>, u64)>> + '_ {
        self.paths.iter().map(|item| {
            let (path, id) = item?;
            Ok((path.to_vec(), decode_id(&id)))
        })
    }

    /// Number of withdrawals logged so far.
    pub fn next_deletion(&self) -> Result<u64> {
        Ok(self.meta.get(NEXT_DELETION)?.map_or(0, |v| decode_id(&v)))
    }

    /// Ids withdrawn from search at log positions `from..to`.
    pub fn deletions(&self, from: u64, to: u64) -> Result<Vec<u64>> {
        self.deleted
            .range(id_key(from)..id_key(to))
            .map(|item| Ok(decode_id(&item?.1)))
            .collect()
    }

    /// The record with this id.
    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        match self.records.get(id_key(id))? {
            Some(bytes) => Ok(Some(decode_record(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Records with ids in `from..to`, in id order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Result<(u64, Record)>> + '_ {
        self.records.range(id_key(from)..id_key(to)).map(|item| {
            let (key, value) = item?;
            Ok((decode_id(&key), decode_record(&value)?))
        })
    }

    /// MiniLM vectors of records' prompts with ids in `from..to`, in id order.
    pub fn text_vectors(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<f32>)>> + '_ {
        vectors_in(&self.vectors, from, to)
    }

    /// The record id below which every prompt has its aligned vector (0 when none has).
    pub fn aligned_upto(&self) -> Result<u64> {
        Ok(self.meta.get(ALIGNED_NEXT)?.map_or(0, |v| decode_id(&v)))
    }

    /// Stores aligned vectors of records' prompts and moves the aligned watermark to `upto`,
    /// atomically, then flushes. `upto` must not go back.
    pub fn insert_aligned(&self, vectors: &[(u64, Vec<f32>)], upto: u64) -> Result<()> {
        let encoded: Vec<([u8; 8], Vec<u8>)> = vectors
            .iter()
            .map(|(id, v)| (id_key(*id), vector_bytes(v)))
            .collect();
        (&self.aligned_vectors, &self.meta)
            .transaction(|(aligned, meta)| {
                for (id, v) in &encoded {
                    aligned.insert(id, v.as_slice())?;
                }
                let old = meta.get(ALIGNED_NEXT)?.map_or(0, |v| decode_id(&v));
                meta.insert(ALIGNED_NEXT, &id_key(old.max(upto)))?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(storage_error)?;
        self.db.flush()?;
        Ok(())
    }

    /// Aligned vectors of records' prompts with ids in `from..to`, in id order.
    pub fn aligned_vectors(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<f32>)>> + '_ {
        vectors_in(&self.aligned_vectors, from, to)
    }

    /// True once any image has been committed.
    pub fn has_images(&self) -> Result<bool> {
        Ok(self.image_vectors.first()?.is_some())
    }

    /// Image embeddings with ids in `from..to`, in id order.
    pub fn image_vectors(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<f32>)>> + '_ {
        vectors_in(&self.image_vectors, from, to)
    }
}

fn vectors_in(
    tree: &sled::Tree,
    from: u64,
    to: u64,
) -> impl Iterator<Item = Result<(u64, Vec<f32>)>> + '_ {
    tree.range(id_key(from)..id_key(to)).map(|item| {
        let (key, value) = item?;
        Ok((decode_id(&key), vector_from_bytes(&value)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_prompt_records_still_read() {
        let old = br#"{"prompt":"a cat","source":"c.txt","metadata":{}}"#;
        assert_eq!(decode_record(old).unwrap().prompt(), Some("a cat"));
        assert!(decode_record(br#"{"kind":"image"}"#).is_err());
    }

    fn image_at(path: PathBuf) -> Record {
        Record::Image(ImageRecord {
            path,
            content_hash: "00".into(),
            size: 1,
            mtime_ns: 2,
            width: 3,
            height: 4,
            prompt: Some("a cat".into()),
            negative_prompt: None,
            parameters: Map::new(),
            provenance: None,
            missing: false,
        })
    }

    /// A name that is not UTF-8 is stored byte for byte and found again from the metadata
    /// readers get; a UTF-8 path is stored as the plain string records always held.
    #[cfg(unix)]
    #[test]
    fn image_paths_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/data/caf\xe9.png"));
        let record = image_at(odd.clone());
        let json = serde_json::to_vec(&record).unwrap();
        let back = decode_record(&json).unwrap();
        assert_eq!(back, record);
        assert_eq!(path_from_metadata(&back.metadata()), Some(odd.clone()));
        assert_eq!(path_from_key(&path_key(&odd)), odd);

        let plain = image_at(PathBuf::from("/data/café.png"));
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(json["path"], "/data/café.png");
        assert_eq!(
            path_from_metadata(&plain.metadata()),
            Some(PathBuf::from("/data/café.png"))
        );
    }

    /// Image records written when the path was a plain string still read.
    #[test]
    fn image_records_with_string_paths_still_read() {
        let old = br#"{"kind":"image","path":"/data/a.png","content_hash":"00","size":1,
            "mtime_ns":2,"width":3,"height":4,"prompt":null,"negative_prompt":null,
            "provenance":null}"#;
        match decode_record(old).unwrap() {
            Record::Image(i) => assert_eq!(i.path, PathBuf::from("/data/a.png")),
            other => panic!("not an image: {other:?}"),
        }
    }
}
