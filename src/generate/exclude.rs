//! What a generation must leave out: the query image's own record and true prompt.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::ingest::corpus::normalize_prompt;
use crate::store::path_from_metadata;

/// Records and prompt texts a generation must not use: the query image's own record and its
/// true prompt, for leave-one-out evaluation.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    ids: HashSet<u64>,
    prompts: HashSet<String>,
    /// blake3 (hex) of image files whose records are excluded, whatever their prompt.
    contents: HashSet<String>,
    /// Canonical paths of image files whose records are excluded (for records indexed before
    /// their metadata carried the content hash).
    paths: HashSet<PathBuf>,
}

impl Exclude {
    /// Excludes nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Excludes record `id`.
    pub fn record(mut self, id: u64) -> Self {
        self.ids.insert(id);
        self
    }

    /// Excludes every record whose prompt is `prompt` (case and spacing aside).
    pub fn prompt(mut self, prompt: &str) -> Self {
        self.prompts.insert(normalize_prompt(prompt));
        self
    }

    /// Excludes every image record of the file at `path` or of a file with its content (its
    /// own record, however its stored prompt differs from its label). A file that cannot be
    /// read excludes nothing more (generating from it fails anyway).
    pub fn file(mut self, path: &Path) -> Self {
        if let Ok(bytes) = std::fs::read(path) {
            self.contents
                .insert(blake3::hash(&bytes).to_hex().to_string());
        }
        if let Ok(canonical) = std::fs::canonicalize(path) {
            self.paths.insert(canonical);
        }
        self
    }

    /// How many records are excluded by id (a search over-fetches by as many).
    pub(super) fn records(&self) -> usize {
        self.ids.len()
    }

    /// Whether record `id` with text `prompt` and `metadata` (as the text index stores it)
    /// is excluded.
    pub fn excludes(&self, id: u64, prompt: &str, metadata: &Map<String, Value>) -> bool {
        self.ids.contains(&id)
            || (!self.prompts.is_empty() && self.prompts.contains(&normalize_prompt(prompt)))
            || metadata
                .get("content_hash")
                .and_then(Value::as_str)
                .is_some_and(|hash| self.contents.contains(hash))
            || (!self.paths.is_empty()
                && path_from_metadata(metadata).is_some_and(|p| self.paths.contains(&p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_by_id_and_normalised_prompt() {
        let none = Map::new();
        let ex = Exclude::none().record(7).prompt("A  Cat");
        assert!(ex.excludes(7, "anything", &none));
        assert!(ex.excludes(1, "a cat", &none));
        assert!(!ex.excludes(1, "a dog", &none));
    }

    /// A file's own record is excluded by its content hash or its path, whatever its prompt.
    #[test]
    fn exclusion_by_file_content_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.png");
        std::fs::write(&file, b"pixels").unwrap();
        let ex = Exclude::none().prompt("label b").file(&file);
        let hash = blake3::hash(b"pixels").to_hex().to_string();
        let by_hash: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"kind": "image", "content_hash": hash}))
                .unwrap();
        assert!(ex.excludes(3, "stored prompt a", &by_hash));
        let canonical = std::fs::canonicalize(&file).unwrap();
        let by_path: Map<String, Value> = serde_json::from_value(
            serde_json::json!({"kind": "image", "path": canonical.to_str().unwrap()}),
        )
        .unwrap();
        assert!(ex.excludes(3, "stored prompt a", &by_path));
        let other: Map<String, Value> = serde_json::from_value(
            serde_json::json!({"kind": "image", "content_hash": "00", "path": "/elsewhere.png"}),
        )
        .unwrap();
        assert!(!ex.excludes(3, "stored prompt a", &other));
    }
}
