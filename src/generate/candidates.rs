//! The candidates of one generation, before their vectors: prompts found near the image, their
//! shares within their kind, and the texts the pick chooses among.

use std::collections::HashSet;

use super::ensemble::{self, Part, PartKind};
use super::{Modifier, NeighbourRamp, Weights};
use crate::ingest::corpus::normalize_prompt;
use crate::models::caption::{Caption, Tags};

/// Candidates (the heaviest) that are also tried with the modifiers appended.
const ASSEMBLED: usize = 4;

/// Words a corpus prompt needs to be a candidate: corpora hold fragments like "a" or "cat"
/// that sit near the mean of everything and would otherwise win as the "closest" text.
const MIN_WORDS: usize = 3;

/// Whether `text` has fewer than [`MIN_WORDS`] words.
pub(super) fn too_short(text: &str) -> bool {
    text.split_whitespace().count() < MIN_WORDS
}

/// An indexed record found near a query.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Found {
    /// Its record id.
    pub id: u64,
    /// Its prompt.
    pub prompt: String,
    /// Its similarity to the query.
    pub similarity: f32,
}

/// Records of one kind found near a query, best first, with their softmax shares.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Nearby {
    /// The records.
    pub found: Vec<Found>,
    /// Each record's share within its kind ([`ensemble::shares`] of the similarities).
    pub shares: Vec<f32>,
}

impl Nearby {
    /// `found`, with shares at softmax `temperature`.
    pub fn new(found: Vec<Found>, temperature: f32) -> Self {
        let similarities: Vec<f32> = found.iter().map(|f| f.similarity).collect();
        let shares = ensemble::shares(&similarities, temperature);
        Self { found, shares }
    }

    /// The records with their shares.
    fn with_shares(&self) -> impl Iterator<Item = (&Found, f32)> {
        self.found.iter().zip(self.shares.iter().copied())
    }

    /// One part per record, of `kind`, its share scaled by `keep` of its similarity.
    fn parts(&self, kind: PartKind, keep: impl Fn(f32) -> f32) -> Vec<Part> {
        let part = |(found, share): (&Found, f32)| Part {
            similarity: Some(found.similarity),
            id: Some(found.id),
            ..candidate(kind, &found.prompt, share * keep(found.similarity))
        };
        self.with_shares().map(part).collect()
    }
}

/// What the image's own pass found: the neighbours' prompts and the cross-modal prompts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Near {
    /// Prompts of the nearest indexed images.
    pub neighbours: Nearby,
    /// Corpus prompts nearest to the image in a text-aligned encoder's space.
    pub cross_modal: Nearby,
}

impl Near {
    /// The ids of every record found, which the corpus search must not return again.
    pub fn ids(&self) -> HashSet<u64> {
        let neighbours = self.neighbours.found.iter();
        neighbours
            .chain(&self.cross_modal.found)
            .map(|f| f.id)
            .collect()
    }
}

/// A candidate of `kind` with `text` and `share`, no weight and no vector yet.
pub(super) fn candidate(kind: PartKind, text: &str, share: f32) -> Part {
    Part {
        kind,
        text: text.to_string(),
        weight: 0.0,
        share,
        similarity: None,
        id: None,
        vector: Vec::new(),
    }
}

/// The first embedding round's candidates: the captions (sharing their kind evenly), the
/// tags' phrase, the neighbours' prompts (each share kept as far as `ramp` trusts its image
/// similarity) and the cross-modal prompts.
pub(super) fn first_round(
    captions: &[Caption],
    tags: Option<&Tags>,
    near: &Near,
    ramp: NeighbourRamp,
) -> Vec<Part> {
    let caption_share = 1.0 / captions.len() as f32;
    let mut parts: Vec<Part> = captions
        .iter()
        .map(|c| candidate(PartKind::Caption, &c.text, caption_share))
        .collect();
    parts.extend(tags.map(|t| candidate(PartKind::Tags, &t.phrase, 1.0)));
    parts.extend(
        near.neighbours
            .parts(PartKind::Neighbour, |s| ramp.confidence(s)),
    );
    parts.extend(near.cross_modal.parts(PartKind::CrossModal, |_| 1.0));
    parts
}

/// The second embedding round's candidates: the corpus prompts and, when there is one, the
/// modifiers phrase.
pub(super) fn second_round(corpus: &Nearby, modifier_text: &str) -> Vec<Part> {
    let mut parts = corpus.parts(PartKind::Corpus, |_| 1.0);
    if !modifier_text.is_empty() {
        parts.push(candidate(PartKind::Modifiers, modifier_text, 1.0));
    }
    parts
}

/// The prior: the index's mean prompt vector, a candidate with no text.
pub(super) fn prior(mean: &[f32]) -> Part {
    Part {
        vector: mean.to_vec(),
        ..candidate(PartKind::Prior, "", 1.0)
    }
}

/// The prompts modifiers are mined from, each weighted by its share and its kind's weight:
/// the neighbours' then the corpus prompts.
pub(super) fn mining_weights<'a>(
    neighbours: &'a Nearby,
    corpus: &'a Nearby,
    weights: &Weights,
) -> Vec<(&'a str, f32)> {
    let neighbours = neighbours
        .with_shares()
        .map(|(f, s)| (f.prompt.as_str(), s * weights.neighbours));
    let corpus = corpus
        .with_shares()
        .map(|(f, s)| (f.prompt.as_str(), s * weights.corpus));
    neighbours.chain(corpus).collect()
}

/// The modifiers as one phrase, comma-separated.
pub(super) fn modifier_phrase(modifiers: &[Modifier]) -> String {
    let phrases: Vec<&str> = modifiers.iter().map(|m| m.phrase.as_str()).collect();
    phrases.join(", ")
}

/// The candidates the text is picked among, as they are: all with a text, and of those only
/// the ones of [`MIN_WORDS`] or more when any is that long.
pub(super) fn as_they_are(parts: &[Part]) -> Vec<&Part> {
    let long_enough = parts.iter().any(|p| !too_short(&p.text));
    parts
        .iter()
        .filter(|p| !(p.text.is_empty() || long_enough && too_short(&p.text)))
        .collect()
}

/// The heaviest few distinct candidate texts with the modifiers appended (the interrogator's
/// shape); none without modifiers. Joining the heaviest in pairs was tried: closer to the
/// ensemble, but further from true prompts (generated 0.541 vs 0.545 on the eval sets).
pub(super) fn assembled(parts: &[Part], modifier_text: &str) -> Vec<String> {
    if modifier_text.is_empty() {
        return Vec::new();
    }
    let mut heaviest: Vec<&Part> = parts
        .iter()
        .filter(|p| !matches!(p.kind, PartKind::Modifiers | PartKind::Prior))
        .collect();
    heaviest.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    let mut seen = HashSet::new();
    heaviest
        .iter()
        .map(|p| p.text.trim_end_matches([',', ' ']))
        .filter(|t| !t.is_empty() && seen.insert(normalize_prompt(t)))
        .take(ASSEMBLED)
        .map(|t| format!("{t}, {modifier_text}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: u64, prompt: &str, similarity: f32) -> Found {
        Found {
            id,
            prompt: prompt.to_string(),
            similarity,
        }
    }

    fn caption(text: &str) -> Caption {
        Caption {
            text: text.to_string(),
            score: 0.0,
        }
    }

    fn part(kind: PartKind, text: &str, weight: f32) -> Part {
        Part {
            weight,
            ..candidate(kind, text, 1.0)
        }
    }

    #[test]
    fn nearby_shares_are_the_softmax_of_similarities() {
        let near = Nearby::new(vec![found(1, "a b c", 0.9), found(2, "d e f", 0.8)], 0.05);
        assert_eq!(near.shares, ensemble::shares(&[0.9, 0.8], 0.05));
        assert!(near.shares[0] > near.shares[1]);
        assert_eq!(Nearby::new(Vec::new(), 0.05), Nearby::default());
    }

    #[test]
    fn first_round_orders_kinds_and_ramps_neighbours() {
        let near = Near {
            neighbours: Nearby::new(
                vec![found(1, "a red fox", 0.4), found(2, "a dog", 0.2)],
                1.0,
            ),
            cross_modal: Nearby::new(vec![found(3, "a photo of a fox", 0.7)], 1.0),
        };
        let tags = Tags {
            phrase: "red fox".into(),
            top: Vec::new(),
        };
        let captions = [caption("a fox"), caption("an animal")];
        let parts = first_round(&captions, Some(&tags), &near, NeighbourRamp::CLASSIFIER);
        let kinds: Vec<PartKind> = parts.iter().map(|p| p.kind).collect();
        let expected = [
            PartKind::Caption,
            PartKind::Caption,
            PartKind::Tags,
            PartKind::Neighbour,
            PartKind::Neighbour,
            PartKind::CrossModal,
        ];
        assert_eq!(kinds, expected);
        assert_eq!(parts[0].share, 0.5);
        assert_eq!(parts[2].share, 1.0);
        // Similarity 0.4 is half way up the classifier ramp; 0.2 is under its floor.
        let half = near.neighbours.shares[0] * 0.5;
        assert!((parts[3].share - half).abs() < 1e-6);
        assert_eq!(parts[4].share, 0.0);
        assert_eq!((parts[3].id, parts[3].similarity), (Some(1), Some(0.4)));
        assert_eq!(parts[5].share, 1.0);
        assert!(parts.iter().all(|p| p.weight == 0.0 && p.vector.is_empty()));
    }

    #[test]
    fn second_round_adds_the_modifiers_phrase_last_when_there_is_one() {
        let corpus = Nearby::new(vec![found(4, "a castle at dusk", 0.6)], 0.05);
        let parts = second_round(&corpus, "oil painting, moody");
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].kind, parts[0].id), (PartKind::Corpus, Some(4)));
        assert_eq!(parts[1].kind, PartKind::Modifiers);
        assert_eq!(parts[1].text, "oil painting, moody");
        assert_eq!(second_round(&corpus, "").len(), 1);
    }

    #[test]
    fn prior_is_a_vector_without_text() {
        let p = prior(&[0.6, 0.8]);
        assert_eq!(
            (p.kind, p.text.as_str(), p.share),
            (PartKind::Prior, "", 1.0)
        );
        assert_eq!(p.vector, [0.6, 0.8]);
    }

    #[test]
    fn mining_weights_scale_shares_by_the_kind_weight() {
        let neighbours = Nearby::new(vec![found(1, "a b c", 0.5)], 0.05);
        let corpus = Nearby::new(vec![found(2, "d e f", 0.5), found(3, "g h i", 0.5)], 0.05);
        let weights = Weights {
            neighbours: 2.0,
            corpus: 4.0,
            ..Weights::default()
        };
        let mined = mining_weights(&neighbours, &corpus, &weights);
        assert_eq!(mined, [("a b c", 2.0), ("d e f", 2.0), ("g h i", 2.0)]);
    }

    #[test]
    fn short_texts_are_left_out_only_when_a_longer_one_exists() {
        let parts = [
            part(PartKind::Tags, "fox", 0.1),
            part(PartKind::Corpus, "a red fox at dawn", 0.2),
            part(PartKind::Prior, "", 0.3),
        ];
        let texts: Vec<&str> = as_they_are(&parts)
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(texts, ["a red fox at dawn"]);
        let short = [part(PartKind::Tags, "fox", 0.1)];
        assert_eq!(as_they_are(&short).len(), 1);
        assert!(too_short("a red") && !too_short("a red fox"));
    }

    #[test]
    fn assembled_joins_the_heaviest_distinct_texts_with_the_modifiers() {
        let parts = [
            part(PartKind::Caption, "a fox", 0.1),
            part(PartKind::Neighbour, "A  Fox,", 0.3),
            part(PartKind::Corpus, "a castle", 0.2),
            part(PartKind::Modifiers, "moody", 0.9),
            part(PartKind::Prior, "", 0.5),
            part(PartKind::Corpus, "one", 0.05),
            part(PartKind::Corpus, "two", 0.04),
            part(PartKind::Corpus, "three", 0.03),
        ];
        assert_eq!(
            assembled(&parts, "moody"),
            [
                "A  Fox, moody",
                "a castle, moody",
                "one, moody",
                "two, moody"
            ]
        );
        assert!(assembled(&parts, "").is_empty());
    }

    #[test]
    fn found_ids_cover_neighbours_and_cross_modal() {
        let near = Near {
            neighbours: Nearby::new(vec![found(1, "a", 0.1)], 1.0),
            cross_modal: Nearby::new(vec![found(5, "b", 0.1)], 1.0),
        };
        assert_eq!(near.ids(), HashSet::from([1, 5]));
    }

    #[test]
    fn modifier_phrase_joins_with_commas() {
        let modifier = |phrase: &str| Modifier {
            phrase: phrase.to_string(),
            category: super::super::Category::Flavor,
            score: 1.0,
        };
        assert_eq!(modifier_phrase(&[modifier("a"), modifier("b")]), "a, b");
        assert_eq!(modifier_phrase(&[]), "");
    }
}
