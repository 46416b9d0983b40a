//! promptdex: what prompt made this image?
//!
//! The crate follows the data flow of the engine, one module per stage:
//! [`models`] (fetch and run the neural models) -> [`ingest`] (read corpora) ->
//! [`store`] (sled catalog, HNSW vectors, tantivy text) -> [`search`] (BM25, semantic, fused)
//! -> [`generate`] (a prompt for an image) -> [`serve`] (HTTP API and web page);
//! [`eval`] scores generated prompts and [`report`] draws the result.
//! The `promptdex` binary is a thin command line over these.

pub mod build;
pub mod error;
pub mod eval;
pub mod fsio;
pub mod generate;
pub mod ingest;
pub mod models;
pub mod npy;
pub mod report;
pub mod search;
pub mod serve;
pub mod store;

pub use error::{Error, Result};
