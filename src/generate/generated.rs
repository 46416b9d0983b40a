//! What a generation returns: the prompt, its vectors, every candidate, and the time per step.

use serde::{Serialize, Serializer};

use super::candidates::candidate;
use super::ensemble::{self, Part, PartKind};
use super::modifiers::Modifier;
use crate::ingest::metadata::{to_infotext, EmbeddedPrompt};
use crate::models::caption::{Caption, Tags};

/// Where the prompt text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The image file carried it.
    Embedded,
    /// Chosen or assembled from the candidates.
    Ensemble,
}

/// The single-method vectors of one generation, for evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodVectors {
    /// The captions and tags alone.
    pub caption: Option<Vec<f32>>,
    /// The nearest image's prompt.
    pub nearest_image: Option<Vec<f32>>,
    /// The nearest corpus prompt (across modalities when the encoder is text-aligned).
    pub nearest_corpus: Option<Vec<f32>>,
    /// The modifiers phrase alone.
    pub modifiers: Option<Vec<f32>>,
}

/// Milliseconds spent per step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Image encoder (and tagger).
    pub encode: f64,
    /// Captioners.
    pub caption: f64,
    /// Graph and text lookups.
    pub search: f64,
    /// MiniLM embedding of the candidates.
    pub embed: f64,
    /// Everything.
    pub total: f64,
}

/// A generated prompt, as `generate --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    /// The prompt.
    pub prompt: String,
    /// Where it came from.
    pub source: Source,
    /// Its MiniLM vector (384-d).
    pub vector: Vec<f32>,
    /// The ensemble vector: the weighted mean of the candidates' vectors.
    pub ensemble: Vec<f32>,
    /// Cosine between the prompt's vector and the ensemble vector.
    pub cosine_to_ensemble: f32,
    /// The prompt stored in the file, if any; printed with `infotext`, its A1111 text.
    #[serde(serialize_with = "with_infotext")]
    pub embedded: Option<EmbeddedPrompt>,
    /// What the ImageNet tagger saw.
    pub tags: Option<Tags>,
    /// Captions.
    pub captions: Vec<Caption>,
    /// Style modifiers picked.
    pub modifiers: Vec<Modifier>,
    /// Every candidate with its weight.
    pub parts: Vec<Part>,
    /// What the index or the models lack, so some candidates are missing.
    pub missing: Vec<String>,
    /// Problems with the file's metadata (a chunk that could not be read and was ignored, a
    /// prompt cut to the limit), naming the file and the chunk.
    pub warnings: Vec<String>,
    /// Time per step.
    pub timings_ms: Timings,
    /// Single-method vectors (not printed).
    #[serde(skip)]
    pub methods: MethodVectors,
}

impl Generated {
    /// The result for an image whose file carried its prompt (`vector`: the prompt's MiniLM
    /// vector): the prompt as is, the only candidate, with everything else empty.
    pub(super) fn stored(found: EmbeddedPrompt, vector: Vec<f32>, total_ms: f64) -> Self {
        let parts = vec![Part {
            weight: 1.0,
            vector: vector.clone(),
            ..candidate(PartKind::Embedded, &found.prompt, 1.0)
        }];
        Self {
            prompt: found.prompt.clone(),
            source: Source::Embedded,
            vector: vector.clone(),
            ensemble: vector,
            cosine_to_ensemble: 1.0,
            embedded: Some(found),
            tags: None,
            captions: Vec::new(),
            modifiers: Vec::new(),
            parts,
            missing: Vec::new(),
            warnings: Vec::new(),
            timings_ms: Timings {
                total: total_ms,
                ..Timings::default()
            },
            methods: MethodVectors::default(),
        }
    }
}

/// The embedded prompt as printed: its fields and `infotext`, the A1111 `parameters` text of
/// its settings ([`to_infotext`]).
fn with_infotext<S: Serializer>(
    embedded: &Option<EmbeddedPrompt>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Printed<'a> {
        #[serde(flatten)]
        prompt: &'a EmbeddedPrompt,
        infotext: String,
    }
    let printed = embedded.as_ref().map(|prompt| Printed {
        prompt,
        infotext: to_infotext(prompt),
    });
    printed.serialize(serializer)
}

/// Each single method's vector: captions and tags averaged, the best neighbour, the best corpus
/// prompt, the modifiers.
pub(super) fn method_vectors(parts: &[Part]) -> MethodVectors {
    let first = |kind| {
        parts
            .iter()
            .find(|p| p.kind == kind)
            .map(|p| p.vector.clone())
    };
    let captions: Vec<(&[f32], f32)> = parts
        .iter()
        .filter(|p| matches!(p.kind, PartKind::Caption | PartKind::Tags))
        .map(|p| (p.vector.as_slice(), p.share))
        .collect();
    let caption = (!captions.is_empty()).then(|| {
        let (v, w): (Vec<&[f32]>, Vec<f32>) = captions.into_iter().unzip();
        ensemble::weighted_mean(&v, &w)
    });
    MethodVectors {
        caption,
        nearest_image: first(PartKind::Neighbour),
        nearest_corpus: first(PartKind::CrossModal).or_else(|| first(PartKind::Corpus)),
        modifiers: first(PartKind::Modifiers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::metadata::Provenance;

    fn part(kind: PartKind, vector: Vec<f32>, share: f32) -> Part {
        Part {
            vector,
            ..candidate(kind, "", share)
        }
    }

    #[test]
    fn method_vectors_take_the_first_of_each_kind() {
        let parts = [
            part(PartKind::Caption, vec![1.0, 0.0], 0.5),
            part(PartKind::Tags, vec![0.0, 1.0], 0.5),
            part(PartKind::Neighbour, vec![0.6, 0.8], 1.0),
            part(PartKind::Neighbour, vec![0.8, 0.6], 1.0),
            part(PartKind::Corpus, vec![0.0, 1.0], 1.0),
        ];
        let methods = method_vectors(&parts);
        let caption = methods.caption.unwrap();
        assert_eq!(
            caption,
            ensemble::weighted_mean(&[&[1.0, 0.0], &[0.0, 1.0]], &[0.5, 0.5])
        );
        assert_eq!(methods.nearest_image, Some(vec![0.6, 0.8]));
        assert_eq!(methods.nearest_corpus, Some(vec![0.0, 1.0]));
        assert_eq!(methods.modifiers, None);
    }

    #[test]
    fn the_cross_modal_prompt_is_the_nearest_corpus_prompt_when_there_is_one() {
        let parts = [
            part(PartKind::Corpus, vec![0.0, 1.0], 1.0),
            part(PartKind::CrossModal, vec![1.0, 0.0], 1.0),
        ];
        assert_eq!(method_vectors(&parts).nearest_corpus, Some(vec![1.0, 0.0]));
        assert_eq!(method_vectors(&[]), MethodVectors::default());
    }

    #[test]
    fn a_stored_prompt_is_its_own_ensemble() {
        let found = EmbeddedPrompt::new(Provenance::A1111Parameters, "a red fox");
        let generated = Generated::stored(found, vec![0.6, 0.8], 2.5);
        assert_eq!(generated.source, Source::Embedded);
        assert_eq!(generated.prompt, "a red fox");
        assert_eq!(generated.ensemble, generated.vector);
        assert_eq!(generated.cosine_to_ensemble, 1.0);
        assert_eq!(generated.parts.len(), 1);
        assert_eq!(generated.parts[0].kind, PartKind::Embedded);
        assert_eq!(generated.parts[0].weight, 1.0);
        assert_eq!(generated.timings_ms.total, 2.5);
        assert_eq!(generated.timings_ms.embed, 0.0);
    }
}
