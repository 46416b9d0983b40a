//! Build: the jobs that fill an index, from inputs through the models into the store.
//!
//! - [`import`]: a prompt corpus -> MiniLM vectors -> catalog -> text index and graph.

mod import;

pub use import::{import_corpus, ImportConfig, ImportProgress, ImportReport};
