//! The stamp (`.verified.json`): the record of verified files (size, mtime, sha256 and, for
//! files pinned by the hub, what the hub declared), its reading and writing, and `sha256_file`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Name of the stamp that records verified files (size + mtime + sha256, and for files pinned
/// by the hub, what the hub declared).
pub const STAMP: &str = ".verified.json";

/// The stamp's contents: one entry per verified file, by name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Stamp {
    pub(super) files: BTreeMap<String, StampEntry>,
}

/// One verified file: its size and mtime when `sha256` was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StampEntry {
    size: u64,
    mtime_ns: u128,
    pub(super) sha256: String,
    /// Set for a file pinned by the hub: the declaration it was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) hub: Option<HubPin>,
}

impl StampEntry {
    /// True when the file still has the size and mtime it had when `sha256` was computed.
    pub(super) fn same_file(&self, other: &StampEntry) -> bool {
        self.size == other.size && self.mtime_ns == other.mtime_ns && self.sha256 == other.sha256
    }
}

/// What the hub declared for a file pinned by it, as recorded in the stamp at fetch time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubPin {
    /// Hub repository.
    pub repo: String,
    /// Commit the file was downloaded at.
    pub revision: String,
    /// The declared checksum, `sha256:HEX` or `git-sha1:HEX` ([`Declared`]).
    pub declared: String,
}

/// The entry for the file at `path` as it is now, with `sha256`; `None` when its size or
/// mtime cannot be read.
pub(super) fn stamp_entry(path: &Path, sha256: &str) -> Option<StampEntry> {
    let meta = fs::metadata(path).ok()?;
    let mtime_ns = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(StampEntry {
        size: meta.len(),
        mtime_ns,
        sha256: sha256.to_string(),
        hub: None,
    })
}

/// The stamp in `dir`; empty when there is none. A stamp that cannot be read or parsed is an
/// error: for files pinned by the hub it holds the only record of what the hub declared, which
/// must not be replaced silently by the hub's current declaration.
pub(super) fn read_stamp(dir: &Path) -> Result<Stamp> {
    let path = dir.join(STAMP);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stamp::default()),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::input(
            &path,
            format!(
                "the record of verified files is damaged ({e}); it holds what the hub declared \
                 at the first fetch, so it is not replaced silently: delete it and run \
                 `promptdex models fetch` to trust the hub's current declarations again"
            ),
        )
    })
}

/// Writes the stamp in `dir` atomically.
pub(super) fn write_stamp(dir: &Path, stamp: &Stamp) -> Result<()> {
    crate::fsio::write_atomic(&dir.join(STAMP), &serde_json::to_vec_pretty(stamp)?)
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    read_chunks(file, path, |chunk| hasher.update(chunk))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Feeds the rest of `file` (opened from `path`, which errors name) to `update`, 1 MiB at a
/// time.
pub(super) fn read_chunks(
    mut file: fs::File,
    path: &Path,
    mut update: impl FnMut(&[u8]),
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}
