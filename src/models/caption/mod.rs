//! Image captioners: pictures in, a sentence describing each out.
//!
//! - [`blip`]: BLIP (`BlipForConditionalGeneration`, e.g. Salesforce/blip-image-captioning-base
//!   and -large) in candle, with greedy and beam-search decoding, as CLIP Interrogator captions.
//!
//! A caption is the first half of a CLIP-Interrogator-style prompt: the captioner says what the
//! picture shows, the image-text model then adds the style terms.

pub mod blip;

pub use blip::{Blip, BlipConfig, Decoding};

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
