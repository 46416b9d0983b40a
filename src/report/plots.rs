//! The report's PNG plots, drawn with plotters into a memory buffer and written with `image`.
//!
//! Text uses a subset of DejaVu Sans embedded in the binary (`assets/fonts/`), so plotting
//! needs no system fonts.

use std::path::Path;
use std::sync::Once;

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::eval::{EvalReport, Method};
use crate::{Error, Result};

/// The embedded font (DejaVu Sans, Latin subset; licence in `assets/fonts/`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// Family name the font is registered under.
const FAMILY: &str = "sans-serif";

/// Width of every plot, in pixels.
pub const WIDTH: u32 = 960;
/// About how many bins the length histogram has.
const LENGTH_BINS: usize = 30;

/// Colour of the true prompts.
const TRUTH: RGBColor = RGBColor(31, 119, 180);
/// Colour of the ensemble prompts.
const PREDICTED: RGBColor = RGBColor(255, 127, 14);
/// Colour of the generated prompts.
const GENERATED: RGBColor = RGBColor(44, 160, 44);
/// Colour of the corpus.
const CORPUS: RGBColor = RGBColor(150, 150, 150);

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| ok = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(
            "the embedded plot font is unreadable".into(),
        ))
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws `height` pixels of plot with `draw` and writes it as a PNG to `path`.
fn render(
    path: &Path,
    height: u32,
    draw: impl FnOnce(&Area) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    register_font()?;
    let failed = |e: String| Error::io(path, std::io::Error::other(e));
    let mut buffer = vec![0u8; WIDTH as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        draw(&root).map_err(|e| failed(e.to_string()))?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    image::save_buffer_with_format(
        path,
        &buffer,
        WIDTH,
        height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| failed(e.to_string()))
}

/// A vertical axis of `n` labelled rows: continuous (so marks can sit between rows), with a
/// key point, hence a label, at each row's centre `0.0, 1.0, ..., n - 1`.
struct Rows(usize);

impl Ranged for Rows {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value + 0.5) / self.0.max(1) as f64;
        limit.0 + (share * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.0 as f64 - 0.5
    }
}

/// Quantile `q` of sorted values, interpolated.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// A deterministic jitter in [-1, 1] for the `i`-th point.
fn jitter(i: usize) -> f64 {
    ((i as f64 * 0.618_033_988_75).fract()) * 2.0 - 1.0
}

/// Per-method score distribution: a box (quartiles, whiskers to the extremes), every image as
/// a dot, and the mean as a diamond with its value; methods top to bottom in table order.
pub fn scores(path: &Path, report: &EvalReport) -> Result<()> {
    let methods: Vec<(Method, Vec<f64>)> = Method::ALL
        .into_iter()
        .map(|m| {
            let mut s: Vec<f64> = report
                .per_image
                .iter()
                .filter_map(|r| r.scores.get(&m).map(|&x| x as f64))
                .filter(|x| x.is_finite())
                .collect();
            s.sort_by(f64::total_cmp);
            (m, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let rows = methods.len().max(1);
    let height = 110 + 56 * rows as u32;
    let low = methods
        .iter()
        .flat_map(|(_, s)| s.first())
        .fold(0.0f64, |a, &b| a.min(b));
    let x_min = (low * 10.0).floor() / 10.0;
    let names: Vec<&str> = methods.iter().map(|(m, _)| m.name()).collect();
    render(path, height, |root| {
        let y_of = |i: usize| (rows - 1 - i) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "Kaggle score (cosine of MiniLM vectors) per method, {} images",
                    report.evaluated
                ),
                (FAMILY, 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(130)
            .build_cartesian_2d(x_min..1.0f64, Rows(rows))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("score")
            .x_labels(12)
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|y| {
                let i = rows as i64 - 1 - y.round() as i64;
                names.get(i as usize).copied().unwrap_or("").to_string()
            })
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        for (i, (method, s)) in methods.iter().enumerate() {
            let y = y_of(i);
            let colour = if *method == Method::Ensemble {
                PREDICTED
            } else {
                TRUTH
            };
            let (q1, q2, q3) = (quantile(s, 0.25), quantile(s, 0.5), quantile(s, 0.75));
            let (lo, hi) = (s[0], s[s.len() - 1]);
            chart.draw_series([Rectangle::new(
                [(q1, y - 0.28), (q3, y + 0.28)],
                colour.mix(0.18).filled(),
            )])?;
            chart.draw_series([Rectangle::new(
                [(q1, y - 0.28), (q3, y + 0.28)],
                colour.stroke_width(2),
            )])?;
            for segment in [
                vec![(q2, y - 0.28), (q2, y + 0.28)],
                vec![(lo, y), (q1, y)],
                vec![(q3, y), (hi, y)],
                vec![(lo, y - 0.12), (lo, y + 0.12)],
                vec![(hi, y - 0.12), (hi, y + 0.12)],
            ] {
                chart.draw_series([PathElement::new(segment, colour.stroke_width(2))])?;
            }
            chart.draw_series(s.iter().enumerate().map(|(k, &x)| {
                Circle::new((x, y + 0.2 * jitter(k)), 3, BLACK.mix(0.45).filled())
            }))?;
            let mean = s.iter().sum::<f64>() / s.len() as f64;
            chart.draw_series([Polygon::new(
                vec![
                    (mean - 0.008, y),
                    (mean, y + 0.22),
                    (mean + 0.008, y),
                    (mean, y - 0.22),
                ],
                RED.filled(),
            )])?;
            chart.draw_series([Text::new(
                format!("mean {mean:.3}  n={}", s.len()),
                (mean + 0.012, y - 0.34),
                (FAMILY, 13).into_font().color(&RED),
            )])?;
        }
        Ok(())
    })
}

/// One image's two points in the PCA plane: the truth and the ensemble prediction, with the
/// label drawn next to the truth.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Label (the image's rank in the table).
    pub label: String,
    /// The true prompt's coordinates.
    pub truth: (f64, f64),
    /// The predicted (ensemble) coordinates.
    pub predicted: (f64, f64),
}

/// A tick label with two decimals, never `-0.00`.
fn tick(v: f64) -> String {
    let text = format!("{v:.2}");
    if text == "-0.00" {
        "0.00".into()
    } else {
        text
    }
}

/// Labels of truths that fall on the same point, joined (`"3, 7, 12 +4"`), one per point.
fn group_labels(pairs: &[Pair]) -> Vec<((f64, f64), String)> {
    /// Labels written out per point, the rest counted.
    const SHOWN: usize = 5;
    let mut groups: Vec<((f64, f64), Vec<&str>)> = Vec::new();
    for p in pairs {
        let near =
            |q: &(f64, f64)| (q.0 - p.truth.0).abs() < 1e-6 && (q.1 - p.truth.1).abs() < 1e-6;
        match groups.iter_mut().find(|(at, _)| near(at)) {
            Some((_, labels)) => labels.push(&p.label),
            None => groups.push((p.truth, vec![&p.label])),
        }
    }
    groups
        .into_iter()
        .map(|(at, mut labels)| {
            labels.sort_by_key(|l| (l.parse::<u64>().unwrap_or(u64::MAX), l.to_string()));
            let mut text = labels[..labels.len().min(SHOWN)].join(", ");
            if labels.len() > SHOWN {
                text.push_str(&format!(" +{}", labels.len() - SHOWN));
            }
            (at, text)
        })
        .collect()
}

/// PCA scatter of true and predicted prompt vectors, each pair joined by a line.
pub fn projection(path: &Path, pairs: &[Pair], explained: [f64; 2]) -> Result<()> {
    let all = pairs.iter().flat_map(|p| [p.truth, p.predicted]);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if pairs.is_empty() {
        (x0, x1, y0, y1) = (-1.0, 1.0, -1.0, 1.0);
    }
    let pad = |a: f64, b: f64| ((b - a).abs() * 0.06).max(1e-3);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    render(path, 760, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "True vs predicted (ensemble) prompt vectors, PCA of both",
                (FAMILY, 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0 - px..x1 + 2.5 * px, y0 - py..y1 + py)?;
        chart
            .configure_mesh()
            .x_desc(format!("PC1 ({:.1}% of variance)", explained[0] * 100.0))
            .y_desc(format!("PC2 ({:.1}% of variance)", explained[1] * 100.0))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(TRANSPARENT)
            .draw()?;
        chart.draw_series(
            pairs
                .iter()
                .map(|p| PathElement::new(vec![p.truth, p.predicted], BLACK.mix(0.3))),
        )?;
        chart
            .draw_series(
                pairs
                    .iter()
                    .map(|p| TriangleMarker::new(p.predicted, 6, PREDICTED.filled())),
            )?
            .label("predicted (ensemble)")
            .legend(|(x, y)| TriangleMarker::new((x, y), 6, PREDICTED.filled()));
        chart
            .draw_series(
                pairs
                    .iter()
                    .map(|p| Circle::new(p.truth, 5, TRUTH.filled())),
            )?
            .label("true prompt")
            .legend(|(x, y)| Circle::new((x, y), 5, TRUTH.filled()));
        chart.draw_series(group_labels(pairs).into_iter().map(|(at, label)| {
            EmptyElement::at(at)
                + Text::new(
                    label,
                    (6, -14),
                    (FAMILY, 12).into_font().color(&BLACK.mix(0.75)),
                )
        }))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FAMILY, 15))
            .draw()?;
        Ok(())
    })
}

/// Share of `values` in each of `bins` bins `width` wide (values past the last bin go into
/// it).
fn shares(values: &[usize], bins: usize, width: usize) -> Vec<f64> {
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[(v / width).min(bins - 1)] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// Histogram of prompt lengths in words: the index's prompts as bars, and the evaluated
/// images' true and generated prompts as lines, all as shares of their own totals.
pub fn lengths(path: &Path, corpus: &[usize], truth: &[usize], generated: &[usize]) -> Result<()> {
    let mut sorted: Vec<usize> = corpus
        .iter()
        .chain(truth)
        .chain(generated)
        .copied()
        .collect();
    sorted.sort_unstable();
    let p99 = sorted
        .get(((sorted.len() as f64 - 1.0) * 0.99).round().max(0.0) as usize)
        .copied()
        .unwrap_or(10);
    let width = (p99 + 1).div_ceil(LENGTH_BINS).max(1);
    let bins = (p99 + 1).div_ceil(width) + 1;
    let corpus_share = shares(corpus, bins, width);
    let truth_share = shares(truth, bins, width);
    let generated_share = shares(generated, bins, width);
    let w = width as f64;
    let top = corpus_share
        .iter()
        .chain(&truth_share)
        .chain(&generated_share)
        .fold(0.0f64, |a, &b| a.max(b))
        .max(0.01)
        * 1.1;
    render(path, 520, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Prompt length in words", (FAMILY, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..(bins * width) as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "words per prompt ({}the last bin holds {} and more)",
                if width > 1 {
                    format!("bins of {width}; ")
                } else {
                    String::new()
                },
                (bins - 1) * width
            ))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(TRANSPARENT)
            .y_desc("share of prompts")
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .disable_x_mesh()
            .draw()?;
        if !corpus.is_empty() {
            chart
                .draw_series(corpus_share.iter().enumerate().map(|(i, &s)| {
                    let x = i as f64 * w;
                    Rectangle::new([(x + 0.06 * w, 0.0), (x + 0.94 * w, s)], CORPUS.filled())
                }))?
                .label(format!("index ({} prompts)", corpus.len()))
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], CORPUS.filled()));
        }
        for (values, share, colour, name) in [
            (truth, &truth_share, TRUTH, "true prompts"),
            (generated, &generated_share, GENERATED, "generated prompts"),
        ] {
            if values.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    share
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| ((i as f64 + 0.5) * w, s)),
                    colour.stroke_width(3),
                ))?
                .label(format!("{name} ({})", values.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FAMILY, 15))
            .draw()?;
        Ok(())
    })
}

/// Horizontal bars: the share of the index's prompts that contain each top term.
pub fn terms(path: &Path, title: &str, top: &[(String, usize)], prompts: usize) -> Result<()> {
    let rows = top.len().max(1);
    let height = 100 + 24 * rows as u32;
    let n = prompts.max(1) as f64;
    let most = top
        .first()
        .map(|t| t.1 as f64 / n)
        .unwrap_or(0.01)
        .max(0.01)
        * 1.15;
    let labels: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
    render(path, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..most, Rows(rows))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("share of the index's prompts that contain it")
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
            .y_label_formatter(&|y| {
                let i = rows as i64 - 1 - y.round() as i64;
                let label = labels.get(i as usize).copied().unwrap_or("");
                if label.chars().count() > 28 {
                    format!("{}…", label.chars().take(27).collect::<String>())
                } else {
                    label.to_string()
                }
            })
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()?;
        chart.draw_series(top.iter().enumerate().map(|(i, (_, count))| {
            let y = (rows - 1 - i) as f64;
            Rectangle::new(
                [(0.0, y - 0.38), (*count as f64 / n, y + 0.38)],
                TRUTH.filled(),
            )
        }))?;
        chart.draw_series(top.iter().enumerate().map(|(i, (_, count))| {
            let y = (rows - 1 - i) as f64;
            let share = *count as f64 / n;
            Text::new(
                format!("{:.1}%", share * 100.0),
                (share + most * 0.005, y + 0.3),
                (FAMILY, 12).into_font(),
            )
        }))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_shares() {
        let s = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(quantile(&s, 0.0), 0.0);
        assert_eq!(quantile(&s, 0.5), 1.5);
        assert_eq!(quantile(&s, 1.0), 3.0);
        assert_eq!(shares(&[0, 1, 1, 9], 3, 1), vec![0.25, 0.5, 0.25]);
        assert_eq!(shares(&[0, 1, 2, 9], 3, 2), vec![0.5, 0.25, 0.25]);
        assert!((0..100).all(|i| jitter(i).abs() <= 1.0));
        assert_eq!(tick(-0.0001), "0.00");
        assert_eq!(tick(0.256), "0.26");
    }

    #[test]
    fn labels_of_one_point_are_joined() {
        let pair = |label: &str, x: f64| Pair {
            label: label.into(),
            truth: (x, 0.0),
            predicted: (0.0, 0.0),
        };
        let pairs: Vec<Pair> = (1..=7)
            .map(|i| pair(&i.to_string(), 1.0))
            .chain([pair("8", 2.0)])
            .collect();
        assert_eq!(
            group_labels(&pairs),
            vec![
                ((1.0, 0.0), "1, 2, 3, 4, 5 +2".into()),
                ((2.0, 0.0), "8".into())
            ]
        );
    }
}
