//! Generate's settings: how many candidates of each kind, their weights, and the neighbour ramp.

use super::{ModifierMode, Weights};
use crate::models::ImageEncoder;

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Nearest indexed images whose prompts are candidates.
    pub neighbours: usize,
    /// Nearest corpus prompts that are candidates.
    pub corpus: usize,
    /// Modifiers added.
    pub modifiers: usize,
    /// How modifiers are picked.
    pub mode: ModifierMode,
    /// Weights of the kinds of candidates.
    pub weights: Weights,
    /// Softmax temperature over similarities within a kind: low trusts the best match, high
    /// spreads the weight evenly.
    pub temperature: f32,
    /// Use the ConSE bridge (ImageNet classes -> prompt space) to find corpus prompts.
    pub bridge: bool,
    /// Classes in the ConSE vector.
    pub bridge_classes: usize,
    /// HNSW search breadth.
    pub ef: usize,
    /// Ignore the prompt stored in the image file.
    pub ignore_metadata: bool,
    /// How a neighbour's image similarity turns into the share of its weight it keeps;
    /// `None`: the default for the loaded image encoder ([`NeighbourRamp::for_encoder`]).
    pub neighbour_ramp: Option<NeighbourRamp>,
}

/// Image similarity below which a neighbour's prompt gets no weight (`floor`) and from which
/// it gets its full weight (`full`), linear in between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeighbourRamp {
    /// Similarity that keeps nothing.
    pub floor: f32,
    /// Similarity that keeps everything.
    pub full: f32,
}

impl NeighbourRamp {
    /// For an image classifier's pooled features (EfficientNet-Lite), where unrelated SD
    /// images sit at 0.2-0.4 and near copies past 0.5.
    pub const CLASSIFIER: Self = Self {
        floor: 0.3,
        full: 0.5,
    };
    /// For a text-aligned (CLIP-family) encoder, whose image embeddings sit higher for
    /// everything (unrelated pictures at 0.4-0.6, the same subject past 0.8).
    pub const TEXT_ALIGNED: Self = Self {
        floor: 0.6,
        full: 0.85,
    };

    /// The default ramp for `encoder`.
    pub fn for_encoder(encoder: &dyn ImageEncoder) -> Self {
        if encoder.text_embedder().is_some() {
            Self::TEXT_ALIGNED
        } else {
            Self::CLASSIFIER
        }
    }

    /// The fraction of its weight a neighbour at image similarity `similarity` keeps.
    pub fn confidence(&self, similarity: f32) -> f32 {
        let span = (self.full - self.floor).max(1e-6);
        ((similarity - self.floor) / span).clamp(0.0, 1.0)
    }
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            neighbours: 8,
            corpus: 8,
            modifiers: 6,
            mode: ModifierMode::Fast,
            weights: Weights::default(),
            temperature: 0.05,
            bridge: true,
            bridge_classes: 5,
            ef: 64,
            ignore_metadata: false,
            neighbour_ramp: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_linear_between_floor_and_full() {
        let ramp = NeighbourRamp::CLASSIFIER;
        assert_eq!(ramp.confidence(0.1), 0.0);
        assert_eq!(ramp.confidence(0.3), 0.0);
        assert!((ramp.confidence(0.4) - 0.5).abs() < 1e-6);
        assert_eq!(ramp.confidence(0.5), 1.0);
        assert_eq!(ramp.confidence(0.9), 1.0);
    }

    #[test]
    fn a_ramp_with_no_span_is_a_step() {
        let ramp = NeighbourRamp {
            floor: 0.5,
            full: 0.5,
        };
        assert_eq!(ramp.confidence(0.49), 0.0);
        assert_eq!(ramp.confidence(0.51), 1.0);
    }
}
