//! The backend seam: what everything above the store asks of an index, whichever engine holds
//! it.
//!
//! [`IndexRead`] is what searches, generation, evaluation, reports and the server use;
//! [`IndexWrite`] is what the indexing jobs use. Two backends implement them: the embedded index
//! directory ([`super::IndexReader`], [`super::IndexWriter`]: sled + hnsw_rs + tantivy, the
//! default) and a Milvus collection set (`milvus://HOST:PORT/NAME`). [`open_reader`] and
//! [`open_writer`] pick the backend from the [`Location`]; nothing above the seam knows which it
//! got.
//!
//! Record ids are the backend's own: dense sequence numbers in the embedded index, stable
//! 64-bit keys in Milvus. Callers only pass them back to the same backend.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    ImageModel, ImageRecord, IndexWatermark, Manifest, NewImage, NewPrompt, SyncReport, TextHit,
};
use crate::{Error, Result};

/// Where an index lives: a directory (the embedded backend) or a Milvus server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An index directory.
    Dir(PathBuf),
    /// A set of Milvus collections.
    Milvus(MilvusUrl),
}

impl Location {
    /// The location as error messages name it (a Milvus URL without its token).
    pub fn path(&self) -> &Path {
        match self {
            Location::Dir(dir) => dir,
            Location::Milvus(url) => Path::new(&url.display),
        }
    }

    /// The directory, for the embedded backend.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(dir) => Some(dir),
            Location::Milvus(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path().display())
    }
}

impl FromStr for Location {
    type Err = Error;

    /// `milvus://HOST:PORT/NAME[?token=…&db=…]` is a Milvus index; anything else a directory.
    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with(MilvusUrl::SCHEME) {
            MilvusUrl::parse(s, std::env::var("MILVUS_TOKEN").ok()).map(Location::Milvus)
        } else {
            Ok(Location::Dir(PathBuf::from(s)))
        }
    }
}

/// A parsed `milvus://HOST:PORT/NAME[?token=…&db=…]`.
#[derive(Clone, PartialEq, Eq)]
pub struct MilvusUrl {
    /// Server host name or address.
    pub host: String,
    /// gRPC port.
    pub port: u16,
    /// Index name: the prefix of its collections' names.
    pub name: String,
    /// Authentication token (`user:password` or an API key), from `?token=` or `MILVUS_TOKEN`.
    pub token: Option<String>,
    /// Database, when not the default one.
    pub db: Option<String>,
    /// `milvus://HOST:PORT/NAME` with the query left out (never shows the token).
    display: String,
}

impl fmt::Debug for MilvusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token stays out of logs and panics.
        f.debug_struct("MilvusUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("db", &self.db)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Longest index name: Milvus allows 255 characters per collection name, and the index's
/// collections append a suffix of their own to it.
pub const MAX_MILVUS_NAME: usize = 200;

impl MilvusUrl {
    /// The URL scheme.
    pub const SCHEME: &'static str = "milvus://";

    /// Parses `url`; `env_token` (from `MILVUS_TOKEN`) is used when the URL has no `token`.
    pub fn parse(url: &str, env_token: Option<String>) -> Result<Self> {
        let bad = |why: String| Error::Invalid(format!("--index {}: {why}", redact(url)));
        let rest = url
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| bad(format!("does not start with {}", Self::SCHEME)))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, name) = rest
            .split_once('/')
            .ok_or_else(|| bad("has no index name (milvus://HOST:PORT/NAME)".into()))?;
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("has no port (milvus://HOST:PORT/NAME)".into()))?;
        if host.is_empty() {
            return Err(bad("has no host".into()));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("port {port:?} is not a number from 1 to 65535")))?;
        check_name(name).map_err(|why| bad(format!("index name {name:?} {why}")))?;
        let mut token = None;
        let mut db = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| bad(format!("{key} is not UTF-8")))?
                .into_owned();
            match key {
                "token" => token = Some(value),
                "db" => {
                    check_name(&value).map_err(|why| bad(format!("db {value:?} {why}")))?;
                    db = Some(value);
                }
                other => return Err(bad(format!("unknown parameter {other:?} (token, db)"))),
            }
        }
        Ok(Self {
            host: host.to_string(),
            port,
            name: name.to_string(),
            token: token.or(env_token).filter(|t| !t.is_empty()),
            db,
            display: format!("{}{host}:{port}/{name}", Self::SCHEME),
        })
    }

    /// `http://HOST:PORT`, the endpoint a gRPC client connects to.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// `url` with any token replaced, for messages.
fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// Fails unless Milvus accepts `name` as (the start of) a collection or database name:
/// letters, digits and underscores, not starting with a digit, at most [`MAX_MILVUS_NAME`].
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_MILVUS_NAME {
        return Err(format!("is longer than {MAX_MILVUS_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "has {c:?}: Milvus names hold only letters, digits and underscores"
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("starts with a digit, which Milvus refuses".into());
    }
    Ok(())
}

/// Which vectors a nearest-neighbour search looks among.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// MiniLM vectors of every record's prompt.
    Prompts,
    /// The image encoder's vectors of indexed images.
    Images,
    /// Prompts embedded by a text-aligned image model's text tower (cross-modal search).
    Aligned,
}

/// A record as searches show it: its prompt (empty for an image without one) and metadata
/// ([`super::Record::metadata`]: `kind`, the corpus columns or the image's path and parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The prompt.
    pub prompt: String,
    /// What results show beside it.
    pub metadata: Map<String, Value>,
}

/// A live record near a query vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Near {
    /// Record id.
    pub id: u64,
    /// Cosine similarity to the query.
    pub similarity: f32,
    /// The record.
    pub record: Stored,
}

/// A record in a fused (hybrid) ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// Record id.
    pub id: u64,
    /// The fused score (reciprocal-rank fusion).
    pub score: f32,
    /// Cosine similarity to the query vector, when the backend reports it.
    pub similarity: Option<f32>,
    /// The record.
    pub record: Stored,
}

/// How much an index holds, as `promptdex stats` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Where the index lives.
    pub location: String,
    /// Which backend holds it: `embedded` or `milvus`.
    pub backend: String,
    /// Live records (prompts and images).
    pub records: u64,
    /// Live records with a prompt vector.
    pub prompts: u64,
    /// Live image records.
    pub images: u64,
    /// Records in the image model's text space (cross-modal search), with a text-aligned
    /// image model.
    pub aligned: u64,
    /// Text model name.
    pub text_model: String,
    /// Image model name, once images are indexed.
    pub image_model: Option<String>,
    /// Bytes the index takes on disk, where the backend can tell.
    pub bytes: Option<u64>,
    /// A number that changes whenever a writer commits (for reloading readers), where the
    /// backend has one.
    pub generation: Option<u64>,
}

/// An index opened for searching. Readers never write and never take the writer lock.
pub trait IndexRead: Send + Sync {
    /// Where the index lives.
    fn location(&self) -> &Location;

    /// The models and parameters the index was built with.
    fn manifest(&self) -> &Manifest;

    /// Counts and sizes.
    fn stats(&self) -> Result<Stats>;

    /// Up to `k` records by BM25 over their prompts, best first.
    fn bm25(&self, query: &str, k: usize) -> Result<Vec<TextHit>>;

    /// Up to `k` live records nearest to `query` (a unit vector) in `space`, best first,
    /// with search breadth `ef` where the engine takes one. Empty when the space holds no
    /// vectors.
    fn nearest(&self, space: Space, query: &[f32], k: usize, ef: usize) -> Result<Vec<Near>>;

    /// True when the engine itself fuses BM25 and semantic rankings in one request
    /// ([`Self::engine_hybrid`]); false when callers fuse [`Self::bm25`] and [`Self::nearest`].
    fn has_engine_hybrid(&self) -> bool {
        false
    }

    /// The hybrid ranking computed by the engine in one request: BM25 over `query` and the
    /// prompts nearest to `vector` (breadth `ef`), `depth` from each, fused by reciprocal rank
    /// with [`RRF_K`](crate::search::RRF_K); best first, live records only. Only called when
    /// [`Self::has_engine_hybrid`].
    fn engine_hybrid(
        &self,
        query: &str,
        vector: &[f32],
        depth: usize,
        ef: usize,
    ) -> Result<Vec<Fused>> {
        let _ = (query, vector, depth, ef);
        Err(Error::Internal(format!(
            "{}: this backend has no engine-side hybrid search",
            self.location()
        )))
    }

    /// The records with these ids, in the same order (`None` for a withdrawn or unknown id).
    fn records(&self, ids: &[u64]) -> Result<Vec<Option<Stored>>>;

    /// Whether `space` holds any vector.
    fn has_vectors(&self, space: Space) -> bool;

    /// The normalised mean of every prompt vector, when there is any.
    fn mean_prompt(&self) -> Option<&[f32]>;

    /// Calls `f` with every live record's id and prompt (records without one skipped).
    fn for_each_prompt(&self, f: &mut dyn FnMut(u64, &str)) -> Result<()>;

    /// How far the stored index has got, read afresh: when it differs from the value read
    /// when this reader was opened, a reader opened now ([`open_reader`]) sees more. `None`
    /// for a backend whose reader always answers from the live engine.
    fn watermark(&self) -> Result<Option<IndexWatermark>>;
}

/// A record's stored MiniLM vector and image vector, each when it has one.
pub type StoredVectors = (Option<Vec<f32>>, Option<Vec<f32>>);

/// Prompts waiting to be embedded into a text-aligned image model's space, and the cursor
/// to hand back with their vectors.
#[derive(Debug, Clone, Default)]
pub struct AlignBatch {
    /// Record ids and their prompts.
    pub prompts: Vec<(u64, String)>,
    /// Opaque position after the batch (pass to [`IndexWrite::add_aligned`]).
    pub upto: u64,
    /// True when nothing is left after this batch.
    pub last: bool,
}

/// An index opened for writing: holds the backend's writer rights for as long as it lives.
pub trait IndexWrite: Send {
    /// Where the index lives.
    fn location(&self) -> &Location;

    /// The models and parameters the index was built with.
    fn manifest(&self) -> &Manifest;

    /// Number of live records.
    fn len(&self) -> Result<u64>;

    /// True when the index holds no record.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys among `keys` ([`crate::ingest::dedup_key`]s) whose prompts are stored.
    fn stored_prompts(&self, keys: &[[u8; 32]]) -> Result<HashSet<[u8; 32]>>;

    /// Stores the prompts whose keys are new, durably, as one batch. Returns how many were
    /// added.
    fn add_prompts(&self, prompts: &[NewPrompt]) -> Result<usize>;

    /// True once any image has been committed.
    fn has_images(&self) -> Result<bool>;

    /// Records `model` as the index's image encoder; fails if images from another encoder
    /// are already indexed.
    fn set_image_model(&mut self, model: &ImageModel) -> Result<()>;

    /// The current record of the image at `path_key` ([`super::path_key`]), with its id.
    fn image_by_path(&self, path_key: &[u8]) -> Result<Option<(u64, ImageRecord)>>;

    /// Every indexed image's path key with the id of its current record.
    fn image_paths(&self) -> Result<Vec<(Vec<u8>, u64)>>;

    /// Stores new images, durably, as one batch; each replaces (withdraws) the previous
    /// record of its path. Returns the new ids in order.
    fn add_images(&self, images: &[NewImage]) -> Result<Vec<u64>>;

    /// Rewrites image record `id` in place (same content: a new mtime); a record marked
    /// `missing` is withdrawn from search.
    fn update_image(&self, id: u64, record: &ImageRecord, path_key: &[u8]) -> Result<()>;

    /// The stored MiniLM and image vectors of record `id`.
    fn stored_vectors(&self, id: u64) -> Result<StoredVectors>;

    /// Up to `limit` prompts not yet in the image model's text space, oldest first.
    fn unaligned(&self, limit: usize) -> Result<AlignBatch>;

    /// Stores prompts' vectors in the image model's text space with the batch's cursor.
    fn add_aligned(&self, vectors: &[(u64, Vec<f32>)], upto: u64) -> Result<()>;

    /// Number of records still waiting for their prompt's aligned vector.
    fn awaiting_alignment(&self) -> Result<u64>;

    /// Makes everything written so far searchable (derived indexes, engine flush).
    fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<SyncReport>;
}

/// Opens the index at `location` for searching; `expected` (when given) must match its models.
pub fn open_reader(location: &Location, expected: Option<&Manifest>) -> Result<Box<dyn IndexRead>> {
    match location {
        Location::Dir(dir) => Ok(Box::new(super::IndexReader::open(dir, expected)?)),
        Location::Milvus(url) => super::milvus::MilvusReader::open(url, expected),
    }
}

/// Opens (or creates) the index at `location` for writing with the models `expected` names.
/// An index directory has one writer at a time: another is refused, or, when `waiting` is
/// given (shard workers), waited for after telling `waiting` so. Milvus takes many writers.
pub fn open_writer(
    location: &Location,
    expected: &Manifest,
    waiting: Option<&mut dyn FnMut(&str)>,
) -> Result<Box<dyn IndexWrite>> {
    match location {
        Location::Dir(dir) => Ok(Box::new(super::IndexWriter::open_with(
            dir, expected, waiting,
        )?)),
        Location::Milvus(url) => super::milvus::MilvusWriter::open(url, expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milvus_urls_parse_with_token_and_db() {
        let url = MilvusUrl::parse(
            "milvus://127.0.0.1:19530/prompts_v1?token=a%3Ab&db=team",
            None,
        )
        .unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 19530));
        assert_eq!(url.name, "prompts_v1");
        assert_eq!(url.token.as_deref(), Some("a:b"));
        assert_eq!(url.db.as_deref(), Some("team"));
        assert_eq!(url.endpoint(), "http://127.0.0.1:19530");
        let env = MilvusUrl::parse("milvus://h:1/x", Some("env".into())).unwrap();
        assert_eq!(env.token.as_deref(), Some("env"));
        let loc: Location = "milvus://h:1/x?token=secret".parse().unwrap();
        assert_eq!(loc.to_string(), "milvus://h:1/x");
        assert!(!format!("{loc:?}").contains("secret"));
    }

    #[test]
    fn bad_milvus_urls_say_what_is_wrong() {
        for (url, why) in [
            ("milvus://h:1/", "is empty"),
            ("milvus://h:1/my-index", "'-'"),
            ("milvus://h:1/1abc", "starts with a digit"),
            ("milvus://h/x", "no port"),
            ("milvus://h:0/x", "1 to 65535"),
            ("milvus://h:99999/x", "1 to 65535"),
            ("milvus://h:1", "no index name"),
            ("milvus://:1/x", "no host"),
            ("milvus://h:1/x?tokn=1", "unknown parameter"),
        ] {
            let err = MilvusUrl::parse(url, None).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
        let err = MilvusUrl::parse("milvus://h:1/a-b?token=secret", None).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn anything_else_is_a_directory() {
        let loc: Location = "some/dir".parse().unwrap();
        assert_eq!(loc.dir(), Some(Path::new("some/dir")));
    }
}
