//! The same searches on two indexes of the same corpus — typically an index directory and a
//! Milvus index: latency of each mode on each, and how far their semantic top-10s agree.
//!
//! `cargo run --release --example bench_backends -- INDEX_A INDEX_B QUERIES.tsv [N=200]`
//! (each INDEX a directory or `milvus://HOST:PORT/NAME`). Prints p50/p99 per mode and index,
//! query embedding included, then the mean overlap of the two semantic top-10 lists (the
//! share of A's ten prompts that B also returns) and how often the first hit agrees.

use std::collections::HashSet;
use std::time::Instant;

use promptdex::ingest::first_prompts;
use promptdex::models::{self, registry::MINILM, text::EmbedConfig, MiniLm};
use promptdex::search::{search_prompts, PromptHit, SearchConfig, SearchMode};
use promptdex::store::{open_reader, IndexRead, Location};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs every query in `mode` on `index`, printing p50/p99; returns the hits of each query.
fn timed_mode(
    name: &str,
    index: &dyn IndexRead,
    model: &MiniLm,
    queries: &[String],
    mode: SearchMode,
) -> anyhow::Result<Vec<Vec<PromptHit>>> {
    let config = SearchConfig {
        mode,
        ..SearchConfig::default()
    };
    search_prompts(index, model, &queries[0], &config)?; // warm-up
    let mut times = Vec::with_capacity(queries.len());
    let mut all = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let hits = search_prompts(index, model, q, &config)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        all.push(hits);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{name:>8} {mode:>9?}: {} queries, p50 {:.2} ms, p99 {:.2} ms",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    Ok(all)
}

fn main() -> anyhow::Result<()> {
    let usage = "usage: bench_backends INDEX_A INDEX_B QUERIES [N]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Location = args.first().expect(usage).parse()?;
    let b: Location = args.get(1).expect(usage).parse()?;
    let queries = first_prompts(std::path::Path::new(args.get(2).expect(usage)), {
        args.get(3).map_or(Ok(200), |s| s.parse())?
    })?;
    let dir = models::fetch_model(&models::models_root(), &MINILM, &mut |l| eprintln!("{l}"))?;
    let model = MiniLm::load(
        &dir,
        EmbedConfig {
            workers: 1,
            ..EmbedConfig::default()
        },
    )?;
    let mut semantic = Vec::new();
    for (name, location) in [("A", &a), ("B", &b)] {
        let t = Instant::now();
        let index = open_reader(location, None)?;
        let stats = index.stats()?;
        println!(
            "{name}: {location} ({}, {} records), opened in {:.2} s",
            stats.backend,
            stats.records,
            t.elapsed().as_secs_f64()
        );
        for mode in [SearchMode::Hybrid, SearchMode::Bm25] {
            timed_mode(name, index.as_ref(), &model, &queries, mode)?;
        }
        semantic.push(timed_mode(
            name,
            index.as_ref(),
            &model,
            &queries,
            SearchMode::Semantic,
        )?);
    }
    let (mut overlap, mut first) = (0.0, 0usize);
    for (x, y) in semantic[0].iter().zip(&semantic[1]) {
        let theirs: HashSet<&str> = y.iter().map(|h| h.prompt.as_str()).collect();
        let shared = x
            .iter()
            .filter(|h| theirs.contains(h.prompt.as_str()))
            .count();
        overlap += shared as f64 / x.len().max(1) as f64;
        first += usize::from(x.first().map(|h| &h.prompt) == y.first().map(|h| &h.prompt));
    }
    println!(
        "semantic top-10 overlap A vs B: {:.4} (mean over {} queries); same first hit: {}",
        overlap / queries.len() as f64,
        queries.len(),
        first
    );
    Ok(())
}
