//! Report: an HTML page with plots that shows an evaluation and the index it ran on.
//!
//! `promptdex report EVAL.json --index INDEX --out FOLDER` reads what `promptdex eval --json`
//! wrote and fills FOLDER with:
//!
//! ```text
//! FOLDER/index.html      methods table, plots, index statistics, per-image table
//! FOLDER/scores.png      score distribution per method
//! FOLDER/pca.png         true vs ensemble prompt vectors in their first two principal components
//! FOLDER/lengths.png     prompt length histogram: index, true and generated prompts
//! FOLDER/terms.png       the index's most common words
//! FOLDER/thumbs/NNN.jpg  a thumbnail per evaluated image
//! ```
//!
//! - [`pca`]: the 2-D projection (power iteration).
//! - [`stats`]: prompt lengths, top words and phrases.
//! - [`plots`]: the PNGs (plotters, embedded font).
//! - [`thumbs`]: the thumbnails.
//! - [`html`]: the page.

pub mod html;
pub mod pca;
pub mod plots;
pub mod stats;
pub mod thumbs;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::eval::{EvalReport, Method};
use crate::store::{open_reader, Location, Manifest, TextIndex};
use crate::{Error, Result};

pub use pca::Pca2;
pub use stats::PromptStats;

/// Words in the top-terms plot.
const TOP_WORDS: usize = 30;
/// Phrases in the top-phrases table.
const TOP_PHRASES: usize = 25;
/// Folder of the thumbnails inside the report folder.
const THUMBS: &str = "thumbs";

/// Reads the JSON that `promptdex eval --json` printed; the error names the file.
pub fn read_eval(path: &Path) -> Result<EvalReport> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        detail: format!("not the JSON of `promptdex eval --json`: {e}"),
    })
}

/// Opens only the text index of the index at `dir` (the vector graphs are not needed here and
/// take seconds to load); no lock is taken and nothing is written.
pub fn open_text(dir: &Path) -> Result<TextIndex> {
    Manifest::read(dir)?.ok_or_else(|| {
        Error::index(
            dir,
            "no index here (manifest.json is missing); create one with `promptdex import`",
        )
    })?;
    let text = dir.join("text");
    if !text.is_dir() {
        return Err(Error::index(dir, "it has no text index (text/ is missing)"));
    }
    TextIndex::open_or_create(&text)
}

/// Counts every record's prompt in a text index, once per record id. Also returns the number
/// of documents read (more than the prompts counted when a record was indexed twice).
pub fn index_stats(text: &TextIndex) -> Result<(PromptStats, usize)> {
    count_prompts(|f| text.for_each_prompt(f))
}

/// [`index_stats`] for the index at `location`: a directory's text index alone (no graphs
/// loaded), or a Milvus index's records.
pub fn location_stats(location: &Location) -> Result<(PromptStats, usize)> {
    match location {
        Location::Dir(dir) => index_stats(&open_text(dir)?),
        Location::Milvus(_) => {
            let reader = open_reader(location, None)?;
            count_prompts(|f| reader.for_each_prompt(f))
        }
    }
}

/// Counts the prompts `each` yields, once per record id, and the number yielded.
fn count_prompts(
    each: impl FnOnce(&mut dyn FnMut(u64, &str)) -> Result<()>,
) -> Result<(PromptStats, usize)> {
    let mut stats = PromptStats::default();
    let mut seen = std::collections::HashSet::new();
    let mut documents = 0;
    each(&mut |id, prompt| {
        documents += 1;
        if seen.insert(id) {
            stats.add(prompt);
        }
    })?;
    Ok((stats, documents))
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The page.
    pub page: PathBuf,
    /// The plots.
    pub plots: Vec<PathBuf>,
    /// Thumbnails made.
    pub thumbnails: usize,
    /// Problems met (unreadable images, plots left out), also shown on the page.
    pub notes: Vec<String>,
}

/// The order of the per-image table: best ensemble score first, unscored images last.
pub fn ranking(eval: &EvalReport) -> Vec<usize> {
    let mut order: Vec<usize> = (0..eval.per_image.len()).collect();
    let key = |i: usize| eval.per_image[i].scores.get(&Method::Ensemble).copied();
    order.sort_by(|&a, &b| match (key(a), key(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    order
}

/// Writes the report of `eval` (read from `eval_path`) and, when given, of the index at
/// `index` into the folder `out` (created if needed; files of an earlier report are
/// replaced).
pub fn write_report(
    eval: &EvalReport,
    eval_path: &Path,
    index: Option<&Location>,
    out: &Path,
) -> Result<Written> {
    let counted = index.map(location_stats).transpose()?;
    let thumbs_dir = out.join(THUMBS);
    std::fs::create_dir_all(&thumbs_dir).map_err(|e| Error::io(&thumbs_dir, e))?;
    let mut notes = Vec::new();
    let order = ranking(eval);

    // Thumbnails, in parallel; a missing or broken image is a note, not a failure.
    let base = eval_path.parent().unwrap_or(Path::new("."));
    let made: Vec<std::result::Result<String, String>> = (0..eval.per_image.len())
        .into_par_iter()
        .map(|i| {
            let image = &eval.per_image[i].image;
            let source =
                thumbs::locate(image, base).ok_or_else(|| format!("{image}: not found"))?;
            let name = format!("{THUMBS}/{i:03}.jpg");
            thumbs::write(&source, &out.join(&name))?;
            Ok(name)
        })
        .collect();
    let mut thumbnail = vec![None; made.len()];
    for (i, result) in made.into_iter().enumerate() {
        match result {
            Ok(name) => thumbnail[i] = Some(name),
            Err(why) => notes.push(format!("no thumbnail: {why}")),
        }
    }
    let thumbnails = thumbnail.iter().flatten().count();

    // Plots of the evaluation.
    let mut plots = Vec::new();
    let mut page_plots = Vec::new();
    let path = out.join("scores.png");
    plots::scores(&path, eval)?;
    plots.push(path);
    page_plots.push((
        "scores.png".to_string(),
        "Score per image and method: box from the first to the third quartile, median line, \
         whiskers to the extremes, red diamond at the mean."
            .to_string(),
    ));
    let rank_of: Vec<usize> = {
        let mut rank = vec![0; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r + 1;
        }
        rank
    };
    let with_vectors: Vec<usize> = (0..eval.per_image.len())
        .filter(|&i| {
            let r = &eval.per_image[i];
            !r.truth_vector.is_empty() && r.ensemble_vector.len() == r.truth_vector.len()
        })
        .collect();
    let rows: Vec<&[f32]> = with_vectors
        .iter()
        .flat_map(|&i| {
            let r = &eval.per_image[i];
            [r.truth_vector.as_slice(), r.ensemble_vector.as_slice()]
        })
        .collect();
    match Pca2::fit(&rows) {
        Some(pca) => {
            let pairs: Vec<plots::Pair> = with_vectors
                .iter()
                .map(|&i| {
                    let r = &eval.per_image[i];
                    plots::Pair {
                        label: rank_of[i].to_string(),
                        truth: pca.project(&r.truth_vector),
                        predicted: pca.project(&r.ensemble_vector),
                    }
                })
                .collect();
            let path = out.join("pca.png");
            plots::projection(&path, &pairs, pca.explained())?;
            plots.push(path);
            page_plots.push((
                "pca.png".to_string(),
                "The MiniLM vectors of the true prompts (blue, numbered as in the image table) \
                 and of the ensemble predictions (orange), projected on the first two \
                 principal components of both; a line joins each image's pair."
                    .to_string(),
            ));
        }
        None => notes.push(
            "no PCA plot: fewer than two images have both a true and a predicted vector".into(),
        ),
    }

    // Statistics and plots of the index.
    let words = |texts: Vec<&str>| -> Vec<usize> {
        texts.iter().map(|t| stats::words(t).count()).collect()
    };
    let evaluated: Vec<_> = eval
        .per_image
        .iter()
        .filter(|r| r.error.is_none())
        .collect();
    let truth_words = words(evaluated.iter().map(|r| r.truth.as_str()).collect());
    let generated_words = words(evaluated.iter().map(|r| r.generated.as_str()).collect());
    let corpus = match (counted, index) {
        (Some((stats, documents)), Some(location)) => {
            if documents > stats.prompts {
                notes.push(format!(
                    "the text index of {} holds {documents} documents for {} records: some \
                     records are in it more than once (counted once here)",
                    location, stats.prompts
                ));
            }
            Some(stats)
        }
        _ => None,
    };
    let mut index_plots = Vec::new();
    let path = out.join("lengths.png");
    plots::lengths(
        &path,
        corpus
            .as_ref()
            .map(|c| c.word_counts.as_slice())
            .unwrap_or(&[]),
        &truth_words,
        &generated_words,
    )?;
    plots.push(path);
    let lengths_caption = (
        "lengths.png".to_string(),
        "Prompt length in words (runs of letters and digits, numbers alone not counted), as a \
         share of each set."
            .to_string(),
    );
    let section = match (&corpus, index) {
        (Some(stats), Some(location)) => {
            index_plots.push(lengths_caption);
            let top = stats.top_words(TOP_WORDS);
            if !top.is_empty() {
                let path = out.join("terms.png");
                plots::terms(
                    &path,
                    &format!("The index's {} most common words", top.len()),
                    &top,
                    stats.prompts,
                )?;
                plots.push(path);
                index_plots.push((
                    "terms.png".to_string(),
                    "Words in most prompts of the index (English function words left out)."
                        .to_string(),
                ));
            }
            Some(html::IndexSection {
                path: location.to_string(),
                stats,
                phrases: stats.top_phrases(TOP_PHRASES),
            })
        }
        _ => {
            page_plots.push(lengths_caption);
            None
        }
    };

    let page = html::Page {
        eval,
        eval_path: eval_path.display().to_string(),
        plots: page_plots,
        index: section,
        index_plots,
        rows: order
            .iter()
            .map(|&i| html::Row {
                image: i,
                thumbnail: thumbnail[i].clone(),
            })
            .collect(),
        notes: notes.clone(),
    };
    let path = out.join("index.html");
    std::fs::write(&path, html::render(&page)).map_err(|e| Error::io(&path, e))?;
    Ok(Written {
        page: path,
        plots,
        thumbnails,
        notes,
    })
}
