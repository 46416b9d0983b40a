//! What the commands print: progress bars on stderr, and on stdout tables, reports and JSON.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use promptdex::eval::EvalReport;
use promptdex::generate::{Generated, Source, Weights};
use promptdex::indexer::{ImageIndexProgress, ImageIndexReport, ImportProgress, ImportReport};
use promptdex::search::{ImageSearch, PromptHit};
use promptdex::store::Stats;

use super::args::IndexArgs;

/// A progress bar on stderr (over a corpus's bytes, a folder's images or an evaluation's
/// images), with rate and ETA; silent when stderr is no terminal.
pub struct Bar {
    /// The indicatif bar.
    pub bar: ProgressBar,
}

impl Bar {
    /// A bar with percentage, ETA and a message, prefixed with `label`.
    pub fn new(label: &str) -> Self {
        Self::with_template(
            label,
            "{prefix} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} {msg}",
        )
    }

    /// A bar drawn with the indicatif `template`, prefixed with `label`.
    pub fn with_template(label: &str, template: &str) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(500));
        Self { bar }
    }
}

impl ImportProgress for Bar {
    fn advance(&self, consumed: u64, size: u64, report: &ImportReport) {
        self.bar.set_length(size.max(1));
        self.bar.set_position(consumed);
        let secs = self.bar.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} new, {} dup, {:.0} prompts/s",
            report.added,
            report.duplicates,
            report.added as f64 / secs
        ));
    }

    fn message(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl ImageIndexProgress for Bar {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
    }

    fn advance(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    fn message(&self, line: &str) {
        ImportProgress::message(self, line);
    }
}

/// Prints `value` as pretty JSON, or as the human table `table` writes.
pub fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    } else {
        table(&mut out)
    }
}

/// `stats` as lines of `name: value`.
pub fn print_stats(out: &mut dyn Write, stats: &Stats) -> Result<()> {
    writeln!(out, "index:       {} ({})", stats.location, stats.backend)?;
    writeln!(out, "records:     {}", stats.records)?;
    writeln!(out, "prompts:     {}", stats.prompts)?;
    writeln!(out, "images:      {}", stats.images)?;
    if stats.aligned > 0 {
        writeln!(out, "cross-modal: {}", stats.aligned)?;
    }
    writeln!(out, "text model:  {}", stats.text_model)?;
    let image = stats.image_model.as_deref().unwrap_or("none yet");
    writeln!(out, "image model: {image}")?;
    if let Some(bytes) = stats.bytes {
        writeln!(
            out,
            "size:        {:.1} MiB",
            bytes as f64 / (1 << 20) as f64
        )?;
    }
    Ok(())
}

/// The first `max` characters of `text`, with `…` when some were cut.
fn clip(text: &str, max: usize) -> String {
    let mut clipped: String = text.chars().take(max).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

/// One corpus's import report: a JSON line, or a sentence.
pub fn print_import_report(
    out: &mut dyn Write,
    json: bool,
    corpus: &Path,
    index: &dyn std::fmt::Display,
    report: &ImportReport,
) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
    } else {
        writeln!(
            out,
            "{}: {} rows, {} new, {} duplicates, {} skipped; {} records in {}; {:.1} s ({:.0} new prompts/s)",
            corpus.display(),
            report.rows,
            report.added,
            report.duplicates,
            report.rejected,
            report.total_records,
            index,
            report.seconds,
            report.added as f64 / report.seconds.max(1e-9)
        )?;
    }
    Ok(())
}

/// The report of `index`: a JSON line, or a summary (and, with `--prompts`, the labels).
pub fn print_index_report(
    out: &mut dyn Write,
    args: &IndexArgs,
    report: &ImageIndexReport,
) -> Result<()> {
    if args.json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} images ({} new, {} changed, {} unchanged, {} vanished, {} with a prompt), \
         {} other files skipped, {} errors, {} metadata warnings; {:.1} s ({:.1} images/s)",
        args.folder.display(),
        report.found,
        report.added,
        report.changed,
        report.unchanged,
        report.vanished,
        report.with_prompt,
        report.skipped_other,
        report.errors.len(),
        report.warnings.len(),
        report.seconds,
        (report.added + report.changed) as f64 / report.seconds.max(1e-9)
    )?;
    if args.prompts.is_some() {
        writeln!(
            out,
            "labels: {} applied, {} matching no image file under {}",
            report.labels_applied,
            report.labels_unmatched.len(),
            args.folder.display()
        )?;
        for path in &report.labels_unmatched {
            writeln!(out, "  no such image: {path}")?;
        }
    }
    Ok(())
}

/// The prompt hits of a search, ranked, with their BM25 and semantic ranks.
pub fn print_table(out: &mut dyn Write, hits: &[PromptHit]) -> Result<()> {
    if hits.is_empty() {
        writeln!(out, "no matching prompts")?;
        return Ok(());
    }
    let rank = |r: Option<usize>| r.map_or("-".to_string(), |r| r.to_string());
    writeln!(
        out,
        "{:>3}  {:>7}  {:>4}  {:>4}  prompt",
        "#", "score", "bm25", "sem"
    )?;
    for (i, hit) in hits.iter().enumerate() {
        let prompt = clip(&hit.prompt, 110);
        writeln!(
            out,
            "{:>3}  {:>7.4}  {:>4}  {:>4}  {}",
            i + 1,
            hit.score,
            rank(hit.bm25_rank),
            rank(hit.semantic_rank),
            prompt
        )?;
    }
    Ok(())
}

/// The nearest images of an image search, then its cross-modal prompts and its note.
pub fn print_image_table(out: &mut dyn Write, found: &ImageSearch) -> Result<()> {
    writeln!(out, "nearest images:")?;
    if found.images.is_empty() {
        writeln!(out, "  none")?;
    }
    for (i, hit) in found.images.iter().enumerate() {
        writeln!(out, "{:>3}  {:.4}  {}", i + 1, hit.similarity, hit.path)?;
        if let Some(prompt) = &hit.prompt {
            writeln!(out, "            prompt: {}", clip(prompt, 110))?;
        }
    }
    if !found.prompts.is_empty() {
        writeln!(out, "\nnearest prompts (cross-modal):")?;
        print_table(out, &found.prompts)?;
    }
    if let Some(note) = &found.note {
        writeln!(out, "\nnote: {note}")?;
    }
    Ok(())
}

/// One image's generated prompt, where it came from, its warnings, tags, modifiers and notes.
pub fn print_generated(out: &mut dyn Write, path: &Path, g: &Generated) -> Result<()> {
    writeln!(out, "{}", path.display())?;
    writeln!(out, "  prompt: {}", g.prompt)?;
    for warning in &g.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    match g.source {
        Source::Embedded => {
            let location = g.embedded.as_ref().map_or("", |e| e.location.as_str());
            writeln!(out, "  source: stored in the file ({location})")?;
        }
        Source::Ensemble => {
            writeln!(
                out,
                "  source: ensemble of {} candidates (cosine to the ensemble vector {:.3}), {:.0} ms",
                g.parts.len(),
                g.cosine_to_ensemble,
                g.timings_ms.total
            )?;
            if let Some(tags) = &g.tags {
                writeln!(out, "  tags: {}", tags.phrase)?;
            }
            if !g.modifiers.is_empty() {
                let mods: Vec<&str> = g.modifiers.iter().map(|m| m.phrase.as_str()).collect();
                writeln!(out, "  modifiers: {}", mods.join(", "))?;
            }
            for note in &g.missing {
                writeln!(out, "  note: {note}")?;
            }
        }
    }
    Ok(())
}

/// The evaluation table: one line per method with its summary, then errors and notes.
pub fn print_eval(out: &mut dyn Write, report: &EvalReport) -> Result<()> {
    writeln!(
        out,
        "{} of {} images evaluated{}; generate p50 {:.0} ms",
        report.evaluated,
        report.images,
        if report.leave_one_out {
            " (leave-one-out)"
        } else {
            ""
        },
        report.latency_p50_ms
    )?;
    writeln!(
        out,
        "{:<16} {:>4} {:>7} {:>7} {:>6}  95% CI",
        "method", "n", "mean", "std", "cv"
    )?;
    for line in &report.methods {
        match &line.summary {
            Some(s) => writeln!(
                out,
                "{:<16} {:>4} {:>7.4} {:>7.4} {:>6.3}  [{:.4}, {:.4}]",
                line.method.name(),
                s.n,
                s.mean,
                s.std,
                s.cv,
                s.ci95.0,
                s.ci95.1
            )?,
            None => writeln!(out, "{:<16}    0       -", line.method.name())?,
        }
    }
    for r in report.per_image.iter().filter(|r| r.error.is_some()) {
        writeln!(out, "error: {}", r.error.as_deref().unwrap_or_default())?;
    }
    for note in &report.missing {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

/// The weights `eval --tune` found, as the `--weights` flag that uses them.
pub fn print_tuned(out: &mut dyn Write, w: &Weights, mean: f32) -> Result<()> {
    writeln!(
        out,
        "tuned weights (ensemble mean {mean:.4} with the same candidates): \
         --weights caption={},tags={},neighbours={},corpus={},cross_modal={},modifiers={},prior={}",
        w.caption, w.tags, w.neighbours, w.corpus, w.cross_modal, w.modifiers, w.prior
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 3), "ééé…");
        assert_eq!(clip("abcdef", 6), "abcdef");
    }
}
