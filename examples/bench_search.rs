//! Prompt-search latency and graph recall on a built index.
//!
//! `cargo run --release --example bench_search -- INDEX QUERIES.tsv [N=200]`
//! Runs N queries (the first prompts of QUERIES) in each mode and prints p50/p99 latency,
//! query embedding included; then the top-10 recall of the HNSW graph against brute force
//! over the same vectors (read from the catalog).

use std::path::PathBuf;
use std::time::Instant;

use promptdex::ingest::first_prompts;
use promptdex::models::{self, registry::MINILM, text::EmbedConfig, MiniLm, TextEmbedder};
use promptdex::search::{search_prompts, SearchConfig, SearchMode};
use promptdex::store::{exact_search, Catalog, IndexReader};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let index = PathBuf::from(args.first().expect("usage: bench_search INDEX QUERIES [N]"));
    let queries_path = PathBuf::from(args.get(1).expect("usage: bench_search INDEX QUERIES [N]"));
    let n: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let queries = first_prompts(&queries_path, n)?;
    let dir = models::fetch_model(&models::models_root(), &MINILM, &mut |l| eprintln!("{l}"))?;
    let model = MiniLm::load(
        &dir,
        EmbedConfig {
            workers: 1,
            ..EmbedConfig::default()
        },
    )?;
    let t = Instant::now();
    let reader = IndexReader::open(&index, None)?;
    println!(
        "opened {} in {:.2} s",
        index.display(),
        t.elapsed().as_secs_f64()
    );
    let mut times = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        model.embed(&[q.as_str()])?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "   embed: {} queries, p50 {:.2} ms, p99 {:.2} ms (query embedding alone)",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    for (name, mode) in [
        ("hybrid", SearchMode::Hybrid),
        ("semantic", SearchMode::Semantic),
        ("bm25", SearchMode::Bm25),
    ] {
        let config = SearchConfig {
            mode,
            ..SearchConfig::default()
        };
        search_prompts(&reader, &model, &queries[0], &config)?; // warm-up
        let mut times = Vec::with_capacity(queries.len());
        for q in &queries {
            let t = Instant::now();
            let hits = search_prompts(&reader, &model, q, &config)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(!hits.is_empty() || mode == SearchMode::Bm25);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:>8}: {} queries, p50 {:.2} ms, p99 {:.2} ms",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    let Some(graph) = reader.vectors() else {
        anyhow::bail!("the index has no vectors");
    };
    let catalog = Catalog::open(&index.join("catalog"))?;
    let all: Vec<(u64, Vec<f32>)> = catalog
        .text_vectors(0, catalog.next_id()?)
        .collect::<Result<_, _>>()?;
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let vectors = model.embed(&refs)?;
    for (depth, ef) in [(10, 64), (50, 64), (50, 128)] {
        let t = Instant::now();
        for q in &vectors {
            graph.search(q, depth, ef)?;
        }
        println!(
            "graph search alone (k {depth}, ef {ef}): {:.3} ms/query",
            t.elapsed().as_secs_f64() * 1000.0 / vectors.len() as f64
        );
    }
    for ef in [32, 64, 128, 256] {
        let mut found = 0usize;
        for q in &vectors {
            let exact: Vec<u64> = exact_search(&all, q, 10).iter().map(|h| h.id).collect();
            let approx = graph.search(q, 10, ef)?;
            found += approx.iter().filter(|h| exact.contains(&h.id)).count();
        }
        println!(
            "recall@10 (ef {ef}) over {} vectors: {:.4}",
            all.len(),
            found as f64 / (10 * vectors.len()) as f64
        );
    }
    Ok(())
}
