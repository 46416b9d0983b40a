//! Captioners: images in, a short description of each out.
//!
//! - [`blip`]: BLIP (`BlipForConditionalGeneration`, e.g. Salesforce/blip-image-captioning-base
//!   and -large) in candle, with greedy and beam-search decoding, as CLIP Interrogator captions.
//! - [`tagger`]: the ImageNet tagger, which reads the class logits the EfficientNet-Lite image
//!   encoder already computed (no second pass) and names the subject.
//!
//! A caption is the first half of a CLIP-Interrogator-style prompt: the captioner says what the
//! picture shows, the style terms come after.

pub mod blip;
pub mod tagger;

pub use blip::{Blip, BlipConfig, Decoding};
pub use tagger::{ImageNetTagger, Tags};

/// A caption for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Caption {
    /// The caption text.
    pub text: String,
    /// Mean log-probability per generated token (higher is more confident).
    pub score: f32,
}

/// Something that describes images in words.
pub trait Captioner: Send + Sync {
    /// Model name (registry name or folder name).
    fn name(&self) -> &str;
    /// One caption per image, in order.
    fn caption(&self, images: &[image::RgbImage]) -> crate::Result<Vec<Caption>>;
}
