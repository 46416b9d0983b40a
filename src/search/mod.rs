//! Search: prompts nearest to a text, by BM25, by meaning, or both fused.
//!
//! - [`fuse`]: reciprocal-rank fusion of ranked lists.
//! - [`text`]: the prompt search itself over an opened index.
//! - [`image`]: nearest indexed images to an image.

mod fuse;
mod image;
mod text;

/// The most hits one search returns (the command line and the server both refuse more).
pub const MAX_K: usize = 1000;

pub use fuse::{rrf, RRF_K};
pub use image::{search_by_image, ImageHit, ImageSearch};
pub use text::{search_prompts, PromptHit, SearchConfig, SearchMode};
