//! Image encoders: pictures in, unit-length embeddings (and class scores) out.
//!
//! - [`preprocess`]: decoding, shorter-side resize + centre crop, and the input tensor.
//! - [`efficientnet_lite`]: EfficientNet-Lite0/2 (ImageNet-1k) in candle, the image encoder
//!   whose 1280-d pooled features are the embedding and whose logits name ImageNet classes.
//! - [`classes`]: the ImageNet-1k class names and top-k over logits.
//! - [`checkpoint`]: shape-checked weight lookups with batch norm folding.
//! - [`kernels`]: the CPU kernels (depthwise convolution, fused bias + activation) that the
//!   channels-last networks run on.
//!
//! The weights come from the registry (`efficientnet-lite0`, `efficientnet-lite2`, and
//! `imagenet-1k-classes` for the names), fetched and converted by [`crate::models::fetch`].

pub mod checkpoint;
pub mod classes;
pub mod clip;
pub mod efficientnet_lite;
pub mod kernels;
pub mod preprocess;

pub use classes::{top_k, ImageNetClasses};
pub use clip::ClipModel;
pub use efficientnet_lite::{EfficientNetLite, Variant};

use image::RgbImage;

use crate::models::TextEmbedder;
use crate::Result;

/// What an image encoder gives for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEmbedding {
    /// The embedding, L2-normalised (unit length).
    pub vector: Vec<f32>,
    /// Raw class scores, for encoders that are classifiers (ImageNet-1k: 1000 logits).
    pub logits: Option<Vec<f32>>,
}

/// Something that turns images into unit-length vectors.
pub trait ImageEncoder: Send + Sync {
    /// Registry name of the model.
    fn name(&self) -> &str;
    /// Vector length.
    fn dim(&self) -> usize;
    /// True when the vectors live in the same space as a text model's (CLIP-like), so text
    /// queries can be compared with them; false for a pure image model.
    fn text_aligned(&self) -> bool;
    /// Side of the square the images are resized and cropped to.
    fn input_size(&self) -> usize;
    /// Embeds `images` (any size; preprocessed as [`preprocess`] describes), one result per
    /// image, in order.
    fn encode(&self, images: &[RgbImage]) -> Result<Vec<ImageEmbedding>>;
    /// The text side of a text-aligned encoder: texts embedded into the same space as the
    /// images (CLIP's text tower). `None` for a pure image model, or when the text side
    /// cannot run (a CLIP folder without its tokenizer).
    fn text_embedder(&self) -> Option<&dyn TextEmbedder> {
        None
    }
}
