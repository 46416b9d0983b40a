//! The library's one error type: every failure names what it was working on.

use std::path::PathBuf;

/// Everything that can go wrong in promptdex, with the file or model it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being accessed.
        path: PathBuf,
        /// The underlying OS error.
        source: std::io::Error,
    },
    /// A model could not be fetched, verified or loaded.
    #[error("model {model}: {detail}")]
    Model {
        /// Registry name of the model.
        model: String,
        /// What went wrong.
        detail: String,
    },
    /// An input file (corpus, list of prompts) is unusable.
    #[error("{}: {detail}", path.display())]
    Input {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it, with a line number when known.
        detail: String,
    },
    /// The index directory is missing, damaged, built differently or busy.
    #[error("index {}: {detail}", path.display())]
    Index {
        /// The index directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A bad argument from the caller.
    #[error("{0}")]
    Invalid(String),
    /// A fault of promptdex itself (an operation that should not fail did: a resize, an
    /// encoder that returned nothing, an aborted transaction): not the caller's doing.
    #[error("internal error: {0}")]
    Internal(String),
    /// Tensor computation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// The catalog (sled) failed.
    #[error("catalog: {0}")]
    Sled(#[from] sled::Error),
    /// The full-text index (tantivy) failed.
    #[error("text index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A model error.
    pub fn model(model: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Model {
            model: model.into(),
            detail: detail.into(),
        }
    }

    /// An input-file error.
    pub fn input(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// An index error.
    pub fn index(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Index {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
