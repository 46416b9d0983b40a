//! Leave-one-out retrieval with the image encoder on labelled image sets.
//!
//! `cargo run --release --example bench_images -- [--label COLUMN] SET_DIR...`
//! Each SET_DIR holds `prompts.csv` (`image,prompt,...`). For every image, its nearest other
//! image by the encoder's vectors is looked up; the table gives the top-1 and top-5 rate of a
//! neighbour with the same label (default label: the prompt itself), and the mean MiniLM
//! cosine between the top-1 neighbour's prompt and the true prompt (the Kaggle metric),
//! against a random neighbour (the exact mean over all other images).

use std::path::{Path, PathBuf};
use std::time::Instant;

use promptdex::ingest::{load_image, DecodeLimits};
use promptdex::models::image::{EfficientNetLite, ImageEncoder};
use promptdex::models::{self, registry::EFFICIENTNET_LITE0, registry::MINILM};
use promptdex::models::{text::EmbedConfig, MiniLm, TextEmbedder};
use promptdex::store::dot;

struct Item {
    prompt: String,
    label: String,
}

fn read_set(dir: &Path, label: &str) -> anyhow::Result<Vec<(PathBuf, Item)>> {
    let mut reader = csv::Reader::from_path(dir.join("prompts.csv"))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (image, prompt) = (col("image").unwrap(), col("prompt").unwrap());
    let label = col(label).ok_or_else(|| anyhow::anyhow!("no column {label}"))?;
    let mut items = Vec::new();
    for row in reader.records() {
        let row = row?;
        items.push((
            dir.join(&row[image]),
            Item {
                prompt: row[prompt].to_string(),
                label: row[label].to_string(),
            },
        ));
    }
    Ok(items)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut label = "prompt".to_string();
    let mut sets = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--label" {
            label = args.next().expect("--label COLUMN");
        } else {
            sets.push(PathBuf::from(arg));
        }
    }
    let root = models::models_root();
    let log = &mut |l: &str| eprintln!("{l}");
    let text_dir = models::fetch_model(&root, &MINILM, log)?;
    let text = MiniLm::load(&text_dir, EmbedConfig::default())?;
    let image_dir = models::fetch_model(&root, &EFFICIENTNET_LITE0, log)?;
    let encoder = EfficientNetLite::load(&image_dir.join(EFFICIENTNET_LITE0.weights().name))?;
    println!("| set | images | label | top-1 same | top-5 same | random same | top-1 prompt cos | random prompt cos | images/s (decode+encode) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for set in &sets {
        let items = read_set(set, &label)?;
        let n = items.len();
        let t = Instant::now();
        let limits = DecodeLimits::default();
        let images = items
            .iter()
            .map(|(p, _)| Ok(load_image(p, &limits)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let vectors: Vec<Vec<f32>> = encoder
            .encode(&images)?
            .into_iter()
            .map(|e| e.vector)
            .collect();
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let prompts: Vec<&str> = items.iter().map(|(_, i)| i.prompt.as_str()).collect();
        let text_vectors = text.embed(&prompts)?;
        let (mut top1, mut top5, mut random_same, mut cos1, mut cos_random) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            order.sort_by(|&a, &b| {
                dot(&vectors[i], &vectors[b]).total_cmp(&dot(&vectors[i], &vectors[a]))
            });
            let same = |j: usize| items[j].1.label == items[i].1.label;
            top1 += same(order[0]) as u8 as f64;
            top5 += order.iter().take(5).any(|&j| same(j)) as u8 as f64;
            random_same += order.iter().filter(|&&j| same(j)).count() as f64 / (n - 1) as f64;
            cos1 += dot(&text_vectors[i], &text_vectors[order[0]]) as f64;
            cos_random += order
                .iter()
                .map(|&j| dot(&text_vectors[i], &text_vectors[j]) as f64)
                .sum::<f64>()
                / (n - 1) as f64;
        }
        let name = set.file_name().unwrap_or_default().to_string_lossy();
        let nf = n as f64;
        println!(
            "| {name} | {n} | {label} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {rate:.1} |",
            top1 / nf,
            top5 / nf,
            random_same / nf,
            cos1 / nf,
            cos_random / nf
        );
    }
    Ok(())
}
