//! Indexer: the jobs that fill an index, from inputs through the models into the store.
//!
//! - [`import`]: a prompt corpus -> MiniLM vectors -> catalog -> text index and graph.
//! - [`images`]: an image folder -> embedded prompts + image vectors -> catalog -> graphs.
//! - [`align`]: prompts -> a text-aligned image model's text tower -> the cross-modal graph.
//! - [`shard`]: which inputs a worker of `--shard K/N` takes.
//!
//! The jobs write through [`crate::store::IndexWrite`], whichever backend holds the index.

mod align;
mod images;
mod import;
mod shard;

pub use align::{align_prompts, AlignReport};
pub use images::{index_images, ImageIndexConfig, ImageIndexProgress, ImageIndexReport};
pub use import::{import_corpus, ImportConfig, ImportProgress, ImportReport};
pub use shard::Shard;
