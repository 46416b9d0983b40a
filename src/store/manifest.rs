//! The manifest: how an index was built, so that it is never read with the wrong models.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// On-disk format version written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// `DIR/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version.
    pub format_version: u32,
    /// Registry name of the text embedder.
    pub text_model: String,
    /// sha256 of the text embedder's weights.
    pub text_model_sha256: String,
    /// Embedding dimension.
    pub dim: usize,
    /// The image encoder that embedded the indexed images, once there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_model: Option<ImageModel>,
    /// How the vector graphs are built; absent in manifests written before it was recorded,
    /// which read as the values those indexes were built with ([`HnswParams::default`]).
    #[serde(default)]
    pub hnsw: HnswParams,
}

/// The construction parameters of every hnsw_rs graph of an index, fixed when the index is
/// created: each graph is built and rebuilt with these (a graph being extended keeps those it
/// was built with). The layer count is not one of them: hnsw_rs dumps only graphs of its
/// full 16 layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Graph degree (hnsw_rs `max_nb_connection`, `M`), 1 to [`MAX_HNSW_CONNECTIONS`].
    pub max_connections: usize,
    /// Candidate list size while inserting (hnsw_rs `ef_construction`), at least 1.
    pub ef_construction: usize,
}

/// Largest graph degree hnsw_rs builds (it ends the process above it).
pub const MAX_HNSW_CONNECTIONS: usize = 256;

impl Default for HnswParams {
    /// The values every index was built with before they were recorded.
    fn default() -> Self {
        Self {
            max_connections: 24,
            ef_construction: 200,
        }
    }
}

impl HnswParams {
    /// Fails unless hnsw_rs can build a graph with these.
    fn check(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_HNSW_CONNECTIONS).contains(&self.max_connections) {
            return Err(format!(
                "hnsw.max_connections is {}, not 1 to {MAX_HNSW_CONNECTIONS}",
                self.max_connections
            ));
        }
        if self.ef_construction == 0 {
            return Err("hnsw.ef_construction is 0".into());
        }
        Ok(())
    }
}

/// The image encoder recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageModel {
    /// Registry name.
    pub name: String,
    /// sha256 of its weights.
    pub sha256: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Whether its vectors live in the text embedder's space (CLIP-like).
    pub text_aligned: bool,
}

impl ImageModel {
    /// The identity of `encoder`, whose weights have checksum `sha256`.
    pub fn of(encoder: &dyn crate::models::ImageEncoder, sha256: &str) -> Self {
        Self {
            name: encoder.name().to_string(),
            sha256: sha256.to_string(),
            dim: encoder.dim(),
            text_aligned: encoder.text_aligned(),
        }
    }
}

impl Manifest {
    /// A manifest for the current format and the given text model.
    pub fn new(text_model: &str, text_model_sha256: &str, dim: usize) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            text_model: text_model.to_string(),
            text_model_sha256: text_model_sha256.to_string(),
            dim,
            image_model: None,
            hnsw: HnswParams::default(),
        }
    }

    /// Reads `dir/manifest.json`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("manifest.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let damaged =
                    |e: String| Error::index(dir, format!("manifest.json is damaged: {e}"));
                let manifest: Self =
                    serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
                manifest.hnsw.check().map_err(damaged)?;
                Ok(Some(manifest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes `dir/manifest.json` atomically; graph parameters hnsw_rs cannot build with are
    /// refused ([`Error::Invalid`]).
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.hnsw.check().map_err(Error::Invalid)?;
        crate::fsio::write_atomic(
            &dir.join("manifest.json"),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    /// Fails unless an index with this manifest can be used with `expected`'s models.
    pub fn check_compatible(&self, dir: &Path, expected: &Manifest) -> Result<()> {
        if self.format_version != expected.format_version {
            return Err(Error::index(
                dir,
                format!(
                    "format version {} (this build reads {}); rebuild the index",
                    self.format_version, expected.format_version
                ),
            ));
        }
        if self.text_model != expected.text_model
            || self.text_model_sha256 != expected.text_model_sha256
            || self.dim != expected.dim
        {
            return Err(Error::index(
                dir,
                format!(
                    "built with text model {} ({}-d, weights {}), not {} ({}-d, weights {}); \
                     use the same model or another index directory",
                    self.text_model,
                    self.dim,
                    short(&self.text_model_sha256),
                    expected.text_model,
                    expected.dim,
                    short(&expected.text_model_sha256)
                ),
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// Fails unless images indexed with `model` can join this index: either it has no images
    /// yet or they were embedded by the same model.
    pub fn check_image_model(&self, dir: &Path, model: &ImageModel) -> Result<()> {
        match &self.image_model {
            Some(found) if found != model => Err(Error::index(
                dir,
                format!(
                    "its images were embedded with {} ({}-d, weights {}), not {} ({}-d, weights {}); \
                     use the same image model or another index directory",
                    found.name,
                    found.dim,
                    short(&found.sha256),
                    model.name,
                    model.dim,
                    short(&model.sha256)
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_manifest_records_the_graph_parameters() {
        let dir = tempfile::tempdir().unwrap();
        Manifest::new("minilm", "ab", 384)
            .write(dir.path())
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(
            json["hnsw"],
            serde_json::json!({"max_connections": 24, "ef_construction": 200})
        );
        let read = Manifest::read(dir.path()).unwrap().unwrap();
        assert_eq!(read.hnsw, HnswParams::default());
    }

    #[test]
    fn a_manifest_without_them_reads_as_the_old_values() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"format_version": 1, "text_model": "minilm", "text_model_sha256": "ab", "dim": 384}"#;
        std::fs::write(dir.path().join("manifest.json"), old).unwrap();
        let read = Manifest::read(dir.path()).unwrap().unwrap();
        assert_eq!(read.hnsw, HnswParams::default());
        assert_eq!(
            (read.hnsw.max_connections, read.hnsw.ef_construction),
            (24, 200)
        );
    }

    #[test]
    fn graph_parameters_hnsw_rs_refuses_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::new("minilm", "ab", 384);
        for (max_connections, ef_construction) in [(0, 200), (257, 200), (24, 0)] {
            manifest.hnsw = HnswParams {
                max_connections,
                ef_construction,
            };
            assert!(manifest.write(dir.path()).is_err());
            let json = serde_json::to_vec(&manifest).unwrap();
            std::fs::write(dir.path().join("manifest.json"), json).unwrap();
            let err = Manifest::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains("hnsw."), "{err}");
        }
        manifest.hnsw = HnswParams {
            max_connections: MAX_HNSW_CONNECTIONS,
            ef_construction: 1,
        };
        manifest.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap().unwrap(), manifest);
    }
}
