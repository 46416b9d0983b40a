//! Evaluate: score prompt-generation methods on labelled images with the Kaggle metric.
//!
//! For each `image,prompt` row, the image goes through [`Generator::generate`], which yields
//! the vector of every method at once; each is scored against the MiniLM vector of the true
//! prompt. With leave-one-out, the image's own record (found by content hash or path, whatever
//! prompt it stores) and every record with its exact prompt are kept out of the candidates
//! (the index may hold the labelled images themselves).
//!
//! - [`metric`]: per-method mean, spread and bootstrap interval.
//! - [`submission`]: the Kaggle submission file.
//! - [`tune`]: the ensemble weights that maximise the mean score over a set.

pub mod metric;
pub mod submission;
pub mod tune;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use metric::{summarize, Summary};
pub use submission::write_submission;

use crate::generate::{Exclude, Generated, Generator, PartKind, Source};
use crate::ingest::Labelled;
use crate::store::{dot, Space};
use crate::Result;

/// A way of predicting the prompt vector of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The index's mean prompt, the same for every image.
    Constant,
    /// Captions and the tagger's phrase.
    Caption,
    /// The nearest indexed image's prompt.
    NearestImage,
    /// The nearest corpus prompt.
    NearestCorpus,
    /// The style modifiers alone.
    Modifiers,
    /// The weighted mean of all candidates' vectors.
    Ensemble,
    /// The generated prompt text's vector.
    Generated,
    /// The corpus prompt closest to the truth: an upper bound for retrieval.
    Oracle,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 8] = [
        Method::Constant,
        Method::Caption,
        Method::NearestImage,
        Method::NearestCorpus,
        Method::Modifiers,
        Method::Ensemble,
        Method::Generated,
        Method::Oracle,
    ];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Constant => "constant",
            Method::Caption => "caption",
            Method::NearestImage => "nearest_image",
            Method::NearestCorpus => "nearest_corpus",
            Method::Modifiers => "modifiers",
            Method::Ensemble => "ensemble",
            Method::Generated => "generated",
            Method::Oracle => "oracle",
        }
    }

    /// Looks a method up by [`Method::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Methods scored.
    pub methods: Vec<Method>,
    /// Keep each image's own record and identical prompts out of its candidates.
    pub leave_one_out: bool,
    /// HNSW search breadth for the oracle.
    pub oracle_ef: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            methods: Method::ALL.to_vec(),
            leave_one_out: false,
            oracle_ef: 512,
        }
    }
}

/// One image's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image file.
    pub image: String,
    /// Its true prompt.
    pub truth: String,
    /// The generated prompt (empty when generation failed).
    pub generated: String,
    /// Score per method (absent when the method had nothing for this image).
    pub scores: BTreeMap<Method, f32>,
    /// Generation time in milliseconds.
    pub latency_ms: f64,
    /// Similarity of the nearest indexed image (after exclusions), when there was one.
    pub neighbour_similarity: Option<f32>,
    /// Why the image could not be evaluated.
    pub error: Option<String>,
    /// MiniLM vector of the truth (for plots).
    pub truth_vector: Vec<f32>,
    /// The ensemble vector (for plots and submissions).
    pub ensemble_vector: Vec<f32>,
}

/// A method's line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method.
    pub method: Method,
    /// Its scores' summary (none when it scored no image).
    pub summary: Option<Summary>,
}

/// What `promptdex eval --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Images in the labelled set.
    pub images: usize,
    /// Images that could be evaluated.
    pub evaluated: usize,
    /// Whether leave-one-out was on.
    pub leave_one_out: bool,
    /// One line per method.
    pub methods: Vec<MethodResult>,
    /// Median generation latency (ms) over evaluated images.
    pub latency_p50_ms: f64,
    /// What the index or models lack.
    pub missing: Vec<String>,
    /// Per-image results.
    pub per_image: Vec<ImageResult>,
}

/// Receives progress: images done and total.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Evaluates `labels` with `generator`; an image that cannot be read is reported in its row
/// and the run goes on. Also returns each image's generation (for tuning).
pub fn evaluate(
    generator: &Generator,
    labels: &[Labelled],
    config: &EvalConfig,
    progress: Progress,
) -> Result<(EvalReport, Vec<Option<Generated>>)> {
    let text = generator.models().text.as_ref();
    let truths: Vec<&str> = labels.iter().map(|l| l.prompt.as_str()).collect();
    let truth_vectors = text.embed(&truths)?;
    let constant = generator.index().mean_prompt();
    let mut per_image = Vec::with_capacity(labels.len());
    let mut generations = Vec::with_capacity(labels.len());
    for (i, (label, truth)) in labels.iter().zip(&truth_vectors).enumerate() {
        let (result, generated) = evaluate_one(generator, label, truth, constant, config)?;
        per_image.push(result);
        generations.push(generated);
        progress(i + 1, labels.len());
    }
    let methods = config
        .methods
        .iter()
        .map(|&method| {
            let scores: Vec<f32> = per_image
                .iter()
                .filter_map(|r| r.scores.get(&method).copied())
                .collect();
            MethodResult {
                method,
                summary: summarize(&scores),
            }
        })
        .collect();
    let mut latencies: Vec<f64> = per_image
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.latency_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok((
        EvalReport {
            images: labels.len(),
            evaluated: latencies.len(),
            leave_one_out: config.leave_one_out,
            methods,
            latency_p50_ms: latencies.get(latencies.len() / 2).copied().unwrap_or(0.0),
            missing: generator.missing(),
            per_image,
        },
        generations,
    ))
}

/// Generates for one labelled image (`truth`: its true prompt's vector; `constant`: the
/// index's mean prompt) and scores every method; a generation that fails is the row's error.
fn evaluate_one(
    generator: &Generator,
    label: &Labelled,
    truth: &[f32],
    constant: Option<&[f32]>,
    config: &EvalConfig,
) -> Result<(ImageResult, Option<Generated>)> {
    let exclude = if config.leave_one_out {
        Exclude::none().prompt(&label.prompt).file(&label.image)
    } else {
        Exclude::none()
    };
    let mut result = ImageResult {
        image: label.image.display().to_string(),
        truth: label.prompt.clone(),
        generated: String::new(),
        scores: BTreeMap::new(),
        latency_ms: 0.0,
        neighbour_similarity: None,
        error: None,
        truth_vector: truth.to_vec(),
        ensemble_vector: Vec::new(),
    };
    let generated = match generator.generate_path(&label.image, &exclude) {
        Ok(generated) => generated,
        Err(e) => {
            result.error = Some(e.to_string());
            return Ok((result, None));
        }
    };
    result.generated = generated.prompt.clone();
    result.latency_ms = generated.timings_ms.total;
    result.neighbour_similarity = generated
        .parts
        .iter()
        .find(|p| p.kind == PartKind::Neighbour)
        .and_then(|p| p.similarity);
    result.ensemble_vector = generated.ensemble.clone();
    for &method in &config.methods {
        let vector = method_vector(method, &generated, constant);
        let score = match (method, vector) {
            (Method::Oracle, _) => oracle(generator, truth, &exclude, config)?,
            (_, Some(v)) => Some(dot(v, truth)),
            _ => None,
        };
        if let Some(score) = score {
            result.scores.insert(method, score);
        }
    }
    Ok((result, Some(generated)))
}

/// The vector a method predicts for one generation (the oracle has none: it needs the truth).
pub fn method_vector<'a>(
    method: Method,
    generated: &'a Generated,
    constant: Option<&'a [f32]>,
) -> Option<&'a [f32]> {
    if generated.source == Source::Embedded {
        // The file said it: every method would be the stored prompt.
        return (method != Method::Oracle).then_some(generated.vector.as_slice());
    }
    let m = &generated.methods;
    match method {
        Method::Constant => constant,
        Method::Caption => m.caption.as_deref(),
        Method::NearestImage => m.nearest_image.as_deref(),
        Method::NearestCorpus => m.nearest_corpus.as_deref(),
        Method::Modifiers => m.modifiers.as_deref(),
        Method::Ensemble => Some(&generated.ensemble),
        Method::Generated => Some(&generated.vector),
        Method::Oracle => None,
    }
}

/// The best score any indexed prompt reaches (excluded ones aside).
fn oracle(
    generator: &Generator,
    truth: &[f32],
    exclude: &Exclude,
    config: &EvalConfig,
) -> Result<Option<f32>> {
    let index = generator.index();
    if !index.has_vectors(Space::Prompts) {
        return Ok(None);
    }
    for hit in index.nearest(Space::Prompts, truth, 16, config.oracle_ef)? {
        let record = &hit.record;
        if !exclude.excludes(hit.id, &record.prompt, &record.metadata) {
            return Ok(Some(hit.similarity));
        }
    }
    Ok(None)
}
