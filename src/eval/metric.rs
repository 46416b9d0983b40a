//! The Kaggle "Stable Diffusion - Image to Prompts" metric and its summary statistics.
//!
//! The score of one image is the cosine similarity of the all-MiniLM-L6-v2 vectors of the
//! predicted and the true prompt; a method's score is the mean over images. The spread is
//! given as standard deviation, coefficient of variation and a 95% percentile bootstrap
//! interval of the mean (seeded, so a report is reproducible).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize};

/// Bootstrap resamples.
pub const BOOTSTRAP_SAMPLES: usize = 2000;
/// Seed of the bootstrap.
pub const BOOTSTRAP_SEED: u64 = 0x5eed;

/// Summary of one method's per-image scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Images scored.
    pub n: usize,
    /// Mean cosine (the metric).
    pub mean: f32,
    /// Standard deviation over images (n - 1 in the denominator).
    pub std: f32,
    /// `std / mean` (NaN, written as JSON `null`, when the mean is 0).
    #[serde(deserialize_with = "null_as_nan")]
    pub cv: f32,
    /// 95% bootstrap interval of the mean: (2.5th, 97.5th percentile).
    pub ci95: (f32, f32),
}

/// Summarises per-image scores; `None` for an empty list.
pub fn summarize(scores: &[f32]) -> Option<Summary> {
    let n = scores.len();
    if n == 0 {
        return None;
    }
    let mean = mean(scores);
    let var = if n > 1 {
        scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / (n - 1) as f32
    } else {
        0.0
    };
    let std = var.sqrt();
    let mut rng = StdRng::seed_from_u64(BOOTSTRAP_SEED);
    let mut means: Vec<f32> = (0..BOOTSTRAP_SAMPLES)
        .map(|_| (0..n).map(|_| scores[rng.random_range(0..n)]).sum::<f32>() / n as f32)
        .collect();
    means.sort_by(f32::total_cmp);
    let at = |q: f32| means[((q * (means.len() - 1) as f32).round() as usize).min(means.len() - 1)];
    Some(Summary {
        n,
        mean,
        std,
        cv: if mean != 0.0 { std / mean } else { f32::NAN },
        ci95: (at(0.025), at(0.975)),
    })
}

/// Reads a number that JSON wrote as `null` because it was NaN.
fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
}

fn mean(xs: &[f32]) -> f32 {
    xs.iter().sum::<f32>() / xs.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let s = summarize(&[0.2, 0.4, 0.6]).unwrap();
        assert!((s.mean - 0.4).abs() < 1e-6);
        assert!((s.std - 0.2).abs() < 1e-6);
        assert!((s.cv - 0.5).abs() < 1e-5);
        assert!(s.ci95.0 >= 0.2 && s.ci95.0 < 0.4 && s.ci95.1 > 0.4 && s.ci95.1 <= 0.6);
        assert_eq!(summarize(&[0.5]).unwrap().ci95, (0.5, 0.5));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn a_nan_cv_survives_json() {
        let s = summarize(&[0.0, 0.0]).unwrap();
        assert!(s.cv.is_nan());
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"cv\":null"), "{json}");
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert!(back.cv.is_nan() && back.mean == 0.0 && back.n == 2);
    }
}
