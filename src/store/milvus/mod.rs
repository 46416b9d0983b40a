//! The Milvus backend (being built: see issue 12).

use super::backend::{IndexRead, IndexWrite, MilvusUrl};
use super::Manifest;
use crate::{Error, Result};

/// A Milvus index opened for searching.
pub struct MilvusReader;

/// A Milvus index opened for writing.
pub struct MilvusWriter;

impl MilvusReader {
    /// Opens the index `url` names.
    pub fn open(url: &MilvusUrl, _expected: Option<&Manifest>) -> Result<Box<dyn IndexRead>> {
        Err(Error::Invalid(format!(
            "{url:?}: the Milvus backend is not built yet"
        )))
    }
}

impl MilvusWriter {
    /// Opens the index `url` names for writing.
    pub fn open(url: &MilvusUrl, _expected: &Manifest) -> Result<Box<dyn IndexWrite>> {
        Err(Error::Invalid(format!(
            "{url:?}: the Milvus backend is not built yet"
        )))
    }
}
