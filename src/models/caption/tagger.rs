//! The ImageNet tagger: the image encoder's 1000 class logits turned into a subject phrase.
//!
//! EfficientNet-Lite computes the logits in the same forward pass as the embedding, so tagging
//! costs a softmax and a sort. The phrase names the most likely classes, the way a prompt names
//! its subject: `"a golden retriever"`, `"a tabby cat and an Egyptian cat"`.

use serde::Serialize;

use crate::models::image::{top_k, ImageNetClasses};

/// Classes kept at most in a phrase.
const MAX_CLASSES: usize = 3;
/// A class joins the phrase when its probability is at least this share of the best one's.
const RELATIVE_FLOOR: f32 = 0.25;

/// One named class with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    /// ImageNet class index.
    pub class: usize,
    /// Class name.
    pub name: String,
    /// Softmax probability.
    pub probability: f32,
}

/// What the tagger says of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tags {
    /// The subject phrase.
    pub phrase: String,
    /// The most likely classes, best first (more than the phrase names).
    pub top: Vec<Tag>,
}

/// Names ImageNet classes from logits.
#[derive(Debug, Clone)]
pub struct ImageNetTagger {
    classes: ImageNetClasses,
}

impl ImageNetTagger {
    /// A tagger over these class names.
    pub fn new(classes: ImageNetClasses) -> Self {
        Self { classes }
    }

    /// The class names.
    pub fn classes(&self) -> &ImageNetClasses {
        &self.classes
    }

    /// Tags one image from its 1000 logits, keeping the `k` best classes in `top`.
    pub fn tag(&self, logits: &[f32], k: usize) -> Tags {
        let top: Vec<Tag> = top_k(logits, k.max(1))
            .into_iter()
            .filter_map(|(class, probability)| {
                Some(Tag {
                    class,
                    name: self.classes.name(class)?.to_string(),
                    probability,
                })
            })
            .collect();
        let best = top.first().map_or(0.0, |t| t.probability);
        let named: Vec<String> = top
            .iter()
            .take(MAX_CLASSES)
            .filter(|t| t.probability >= best * RELATIVE_FLOOR)
            .map(|t| with_article(&t.name))
            .collect();
        Tags {
            phrase: join_and(&named),
            top,
        }
    }
}

/// `"an eagle"`, `"a dog"`; names that are plural or proper-looking stay bare.
pub fn with_article(name: &str) -> String {
    let first = name.chars().next().unwrap_or(' ');
    if first.is_uppercase() || name.ends_with('s') && !name.ends_with("ss") {
        return name.to_string();
    }
    let article = if "aeiou".contains(first.to_ascii_lowercase()) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// `"a"`, `"a and b"`, `"a, b and c"`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_and_lists() {
        assert_eq!(with_article("eagle"), "an eagle");
        assert_eq!(with_article("dog"), "a dog");
        assert_eq!(with_article("Egyptian cat"), "Egyptian cat");
        assert_eq!(with_article("sunglasses"), "sunglasses");
        assert_eq!(with_article("dress"), "a dress");
        let items = ["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(join_and(&items), "a, b and c");
        assert_eq!(join_and(&items[..1]), "a");
    }
}
