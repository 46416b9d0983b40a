//! ImageNet-1k class names, to read the EfficientNet-Lite logits.

use std::path::Path;

use crate::models::registry::IMAGENET_CLASSES;
use crate::{Error, Result};

/// The 1000 ImageNet-1k class names in class-index order (the registry's
/// `imagenet-1k-classes`, a JSON list of strings).
#[derive(Debug, Clone)]
pub struct ImageNetClasses {
    names: Vec<String>,
}

impl ImageNetClasses {
    /// Reads the list from the folder `promptdex models fetch imagenet-1k-classes` fills.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        Self::load(&dir.join(IMAGENET_CLASSES.weights().name))
    }

    /// Reads a JSON list of exactly 1000 class names.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let names: Vec<String> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(path, format!("not a JSON list of names: {e}")))?;
        if names.len() != 1000 {
            return Err(Error::input(
                path,
                format!("{} class names, expected 1000", names.len()),
            ));
        }
        Ok(Self { names })
    }

    /// The name of class `index`, if there is one.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// All names, in class order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// The `k` most likely classes of one logit vector, best first, with softmax probabilities.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| (i, (logits[i] - max).exp() / total))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalises() {
        let top = top_k(&[0.0, 2.0, 1.0], 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
        let e = [1.0f32, 2f32.exp(), 1f32.exp()];
        assert!((top[0].1 - e[1] / e.iter().sum::<f32>()).abs() < 1e-6);
    }
}
