//! Build: the jobs that fill an index, from inputs through the models into the store.
//!
//! - [`import`]: a prompt corpus -> MiniLM vectors -> catalog -> text index and graph.
//! - [`images`]: an image folder -> embedded prompts + image vectors -> catalog -> graphs.

mod images;
mod import;

pub use images::{decode, index_images, ImageIndexConfig, ImageIndexProgress, ImageIndexReport};
pub use import::{import_corpus, ImportConfig, ImportProgress, ImportReport};
