//! promptdex: what prompt made this image?
//!
//! The crate follows the data flow of the engine, one module per stage; a module only calls
//! the stages before it:
//! [`models`] (fetch and run the neural models) -> [`ingest`] (read corpora, image files and
//! their embedded prompts) -> [`store`] (sled catalog, HNSW vectors, tantivy text) ->
//! [`indexer`] (the jobs that fill an index) -> [`search`] (BM25, semantic, fused; by image)
//! -> [`generate`] (a prompt for an image) -> [`eval`] (scores generated prompts) ->
//! [`report`] (draws the scores) -> [`serve`] (HTTP API and web page).
//! [`fsio`] (atomic file replacement), [`npy`] and [`error`] sit under all of them.
//! The `promptdex` binary is a thin command line over these.

pub mod error;
pub mod eval;
pub mod fsio;
pub mod generate;
pub mod indexer;
pub mod ingest;
pub mod models;
pub mod npy;
pub mod report;
pub mod search;
pub mod serve;
pub mod store;

pub use error::{Error, Result};
