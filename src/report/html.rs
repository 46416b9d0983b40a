//! The report page: one self-contained `index.html` (inline CSS, no scripts) that links the
//! plots and thumbnails beside it. All text from the data is escaped.

use std::fmt::Write;

use super::stats::PromptStats;
use crate::eval::{EvalReport, Method};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The index part of the page.
pub struct IndexSection<'a> {
    /// The index directory, as given.
    pub path: String,
    /// Its prompt statistics.
    pub stats: &'a PromptStats,
    /// The most common multi-word phrases.
    pub phrases: Vec<(String, usize)>,
}

/// One line of the per-image table.
pub struct Row {
    /// Position of the image in the eval report's `per_image`.
    pub image: usize,
    /// Thumbnail path relative to the page, when one could be made.
    pub thumbnail: Option<String>,
}

/// Everything the page shows.
pub struct Page<'a> {
    /// The eval report.
    pub eval: &'a EvalReport,
    /// The eval report's file, as given.
    pub eval_path: String,
    /// Plot files relative to the page, with their captions, in order.
    pub plots: Vec<(String, String)>,
    /// The index section, when an index was given.
    pub index: Option<IndexSection<'a>>,
    /// Plots of the index section (file, caption).
    pub index_plots: Vec<(String, String)>,
    /// The per-image table, best ensemble score first.
    pub rows: Vec<Row>,
    /// Problems met while writing the report.
    pub notes: Vec<String>,
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { font-weight: bold; }
td.prompt { max-width: 380px; font-size: 0.92em; }
td.thumb { width: 128px; text-align: center; }
.name { font-size: 0.8em; word-break: break-all; }
.missing { width: 128px; height: 96px; background: #eee; color: #777; display: flex;
  align-items: center; justify-content: center; font-size: 0.85em; }
img.plot { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.note { color: #8a4b00; } .error { color: #b00020; } .muted { color: #777; }
figure { margin: 0.8em 0; } figcaption { color: #555; font-size: 0.92em; }
";

/// Longest file name shown under a thumbnail (the full path is in its tooltip).
const NAME_CHARS: usize = 28;

/// `text` cut to `max` characters, the middle replaced by an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_string();
    }
    let head = (max - 1) / 2;
    let tail = max - 1 - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Background colour of a score cell: red at 0 through yellow to green at 1.
fn heat(score: f32) -> String {
    let hue = (score.clamp(0.0, 1.0) * 120.0).round();
    format!("hsl({hue}, 65%, 86%)")
}

fn figure(html: &mut String, file: &str, caption: &str) {
    let _ = writeln!(
        html,
        "<figure><img class=\"plot\" src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
        escape(file),
        escape(caption),
        escape(caption)
    );
}

/// Renders the page.
pub fn render(page: &Page) -> String {
    let eval = page.eval;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>promptdex report</title><style>{STYLE}</style></head><body>\n\
         <h1>promptdex report</h1>\n<p class=\"muted\">From <code>{}</code>: {} of {} images \
         evaluated{}; median generation time {:.0} ms.</p>\n",
        escape(&page.eval_path),
        eval.evaluated,
        eval.images,
        if eval.leave_one_out {
            ", leave-one-out (each image's own record and identical prompts were not candidates)"
        } else {
            ""
        },
        eval.latency_p50_ms
    );
    for note in eval.missing.iter().chain(&page.notes) {
        let _ = writeln!(h, "<p class=\"note\">Note: {}</p>", escape(note));
    }

    methods(&mut h, eval);
    for (file, caption) in &page.plots {
        figure(&mut h, file, caption);
    }
    if let Some(index) = &page.index {
        index_section(&mut h, index, &page.index_plots);
    }
    images(&mut h, page);
    h.push_str("</body></html>\n");
    h
}

fn methods(h: &mut String, eval: &EvalReport) {
    h.push_str(
        "<h2>Methods</h2>\n<p>Score: cosine similarity of the all-MiniLM-L6-v2 vectors of the \
         predicted and the true prompt (the Kaggle &ldquo;Stable Diffusion - Image to \
         Prompts&rdquo; metric), averaged over images. The 95% interval is a bootstrap of the \
         mean. <em>oracle</em> is the corpus prompt closest to the truth: an upper bound for \
         retrieval, not a method.</p>\n<table><tr><th>method</th><th class=\"num\">n</th>\
         <th class=\"num\">mean</th><th class=\"num\">std</th><th class=\"num\">cv</th>\
         <th class=\"num\">95% CI</th></tr>\n",
    );
    let best = eval
        .methods
        .iter()
        .filter(|m| m.method != Method::Oracle)
        .filter_map(|m| Some((m.method, m.summary.as_ref()?.mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|b| b.0);
    for line in &eval.methods {
        let class = if Some(line.method) == best {
            " class=\"best\""
        } else {
            ""
        };
        match &line.summary {
            Some(s) => {
                let _ = writeln!(
                    h,
                    "<tr{class}><td>{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\" style=\"background:{}\">{:.4}</td>\
                     <td class=\"num\">{:.4}</td><td class=\"num\">{:.3}</td>\
                     <td class=\"num\">[{:.4}, {:.4}]</td></tr>",
                    line.method.name(),
                    s.n,
                    heat(s.mean),
                    s.mean,
                    s.std,
                    s.cv,
                    s.ci95.0,
                    s.ci95.1
                );
            }
            None => {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">0</td><td colspan=\"4\" \
                     class=\"muted\">no image scored</td></tr>",
                    line.method.name()
                );
            }
        }
    }
    h.push_str("</table>\n");
}

fn index_section(h: &mut String, index: &IndexSection, plots: &[(String, String)]) {
    let stats = index.stats;
    let (words, chars) = (stats.words(), stats.chars());
    let _ = write!(
        h,
        "<h2>Index</h2>\n<p><code>{}</code>: {} prompts.</p>\n<table>\
         <tr><th>per prompt</th><th class=\"num\">mean</th><th class=\"num\">median</th>\
         <th class=\"num\">95th percentile</th><th class=\"num\">max</th></tr>\n\
         <tr><td>words</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n\
         <tr><td>characters</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n</table>\n",
        escape(&index.path),
        stats.prompts,
        words.mean,
        words.median,
        words.p95,
        words.max,
        chars.mean,
        chars.median,
        chars.p95,
        chars.max
    );
    for (file, caption) in plots {
        figure(h, file, caption);
    }
    if !index.phrases.is_empty() {
        h.push_str(
            "<h3>Most common phrases</h3>\n<p class=\"muted\">Comma-separated parts of the \
             prompts (weights markup removed), by the number of prompts that contain them.</p>\
             \n<table><tr><th>phrase</th><th class=\"num\">prompts</th>\
             <th class=\"num\">share</th></tr>\n",
        );
        let n = stats.prompts.max(1) as f64;
        for (phrase, count) in &index.phrases {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{count}</td><td class=\"num\">{:.2}%</td></tr>",
                escape(phrase),
                *count as f64 / n * 100.0
            );
        }
        h.push_str("</table>\n");
    }
}

fn images(h: &mut String, page: &Page) {
    let eval = page.eval;
    let shown: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| eval.per_image.iter().any(|r| r.scores.contains_key(m)))
        .collect();
    let _ = write!(
        h,
        "<h2>Images</h2>\n<p class=\"muted\">Best ensemble score first. The # is the label of \
         the image's true prompt in the PCA plot.</p>\n<table><tr><th class=\"num\">#</th>\
         <th>image</th><th>true prompt</th><th>generated prompt</th>"
    );
    for m in &shown {
        let _ = write!(h, "<th class=\"num\">{}</th>", m.name().replace('_', " "));
    }
    h.push_str("<th class=\"num\">ms</th></tr>\n");
    for (rank, row) in page.rows.iter().enumerate() {
        let r = &eval.per_image[row.image];
        let name = std::path::Path::new(&r.image)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.image.clone());
        let picture = match &row.thumbnail {
            Some(src) => format!(
                "<img src=\"{}\" alt=\"{}\" title=\"{}\">",
                escape(src),
                escape(&name),
                escape(&r.image)
            ),
            None => "<div class=\"missing\">no image</div>".to_string(),
        };
        let generated = match &r.error {
            Some(e) => format!("<span class=\"error\">error: {}</span>", escape(e)),
            None => escape(&r.generated),
        };
        let _ = write!(
            h,
            "<tr><td class=\"num\">{}</td><td class=\"thumb\">{picture}<br>\
             <span class=\"muted name\" title=\"{}\">{}</span></td><td class=\"prompt\">{}</td>\
             <td class=\"prompt\">{generated}</td>",
            rank + 1,
            escape(&r.image),
            escape(&shorten(&name, NAME_CHARS)),
            escape(&r.truth)
        );
        for m in &shown {
            match r.scores.get(m) {
                Some(&s) => {
                    let _ = write!(
                        h,
                        "<td class=\"num\" style=\"background:{}\">{s:.3}</td>",
                        heat(s)
                    );
                }
                None => h.push_str("<td class=\"num muted\">-</td>"),
            }
        }
        let _ = writeln!(h, "<td class=\"num\">{:.0}</td></tr>", r.latency_ms);
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<b>"a" & 'b'</b>"#),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
        assert_eq!(heat(1.5), "hsl(120, 65%, 86%)");
        assert_eq!(shorten("abcdefghij", 5), "ab…ij");
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(heat(-0.2), "hsl(0, 65%, 86%)");
    }
}
