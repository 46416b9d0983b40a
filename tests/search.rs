//! Search quality through the library: graph recall against brute force on real vectors.

mod common;

use promptdex::build::{import_corpus, ImportConfig, ImportProgress, ImportReport};
use promptdex::models::TextEmbedder;
use promptdex::search::{search_prompts, SearchConfig, SearchMode};
use promptdex::store::{exact_search, IndexReader, IndexWriter, Manifest};

struct Quiet;

impl ImportProgress for Quiet {
    fn advance(&self, _: u64, _: u64, _: &ImportReport) {}
    fn message(&self, _: &str) {}
}

#[test]
fn graph_recall_at_10_is_at_least_095_against_brute_force() {
    let model = common::minilm();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.tsv");
    // 2,500 indexed prompts; the 100 after them are the queries.
    let all = common::sample_tsv(2600);
    let lines: Vec<&str> = all.lines().collect();
    std::fs::write(&corpus, lines[..2501].join("\n")).unwrap();
    let queries: Vec<&str> = lines[2501..]
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();

    let dir = tmp.path().join("index");
    let manifest = Manifest::new(model.name(), model.weights_sha256(), model.dim());
    let writer = IndexWriter::open(&dir, &manifest).unwrap();
    let report = import_corpus(&writer, model, &corpus, &ImportConfig::default(), &Quiet).unwrap();
    assert!(report.added > 2400, "{report:?}");
    let stored: Vec<(u64, Vec<f32>)> = writer
        .catalog()
        .text_vectors(0, writer.catalog().next_id().unwrap())
        .collect::<Result<_, _>>()
        .unwrap();
    drop(writer);

    let reader = IndexReader::open(&dir, Some(&manifest)).unwrap();
    let graph = reader.vectors().expect("a graph");
    assert_eq!(graph.len(), stored.len());
    let config = SearchConfig::default();
    let vectors = model.embed(&queries).unwrap();
    let mut found = 0;
    for q in &vectors {
        let exact: Vec<u64> = exact_search(&stored, q, 10).iter().map(|h| h.id).collect();
        let approx = graph.search(q, 10, config.ef).unwrap();
        found += approx.iter().filter(|h| exact.contains(&h.id)).count();
    }
    let recall = found as f64 / (10 * vectors.len()) as f64;
    eprintln!("recall@10 over {} vectors: {recall:.4}", stored.len());
    assert!(recall >= 0.95, "recall@10 {recall}");

    // Semantic search returns the graph's order with exact similarities; hybrid fuses.
    let semantic = SearchConfig {
        mode: SearchMode::Semantic,
        ..SearchConfig::default()
    };
    let hits = search_prompts(&reader, model, queries[0], &semantic).unwrap();
    let exact = exact_search(&stored, &vectors[0], 1);
    assert_eq!(hits[0].id, exact[0].id);
    assert!((hits[0].score - exact[0].similarity).abs() < 1e-5);
}
