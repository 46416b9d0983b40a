//! Search quality through the library: graph recall against brute force on real vectors.

use crate::common;

use promptdex::indexer::{import_corpus, ImportConfig, ImportProgress, ImportReport};
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

/// The stored text of BM25's first hits, and whether `id` is first or tied first with the very
/// same text.
fn first_or_tied_with_same_text(
    reader: &IndexReader,
    hits: &[promptdex::store::TextHit],
    id: u64,
    prompt: &str,
) -> bool {
    let Some(first) = hits.first() else {
        return false;
    };
    first.id == id
        || hits.iter().any(|h| h.id == id && h.score == first.score)
            && hits
                .iter()
                .take_while(|h| h.score == first.score)
                .all(|h| reader.text().get(h.id).unwrap().unwrap().0 == prompt)
}

#[test]
fn every_exact_prompt_of_5k_is_the_first_bm25_and_hybrid_hit() {
    let model = common::minilm();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.tsv");
    // The first 5,000 prompts of the DiffusionDB slice: hundreds contain " - ", quotes,
    // colons, `+`, parentheses, `AND`.
    std::fs::write(&corpus, common::sample_tsv(5000)).unwrap();
    let dir = tmp.path().join("index");
    let manifest = Manifest::new(model.name(), model.weights_sha256(), model.dim());
    let writer = IndexWriter::open(&dir, &manifest).unwrap();
    import_corpus(&writer, model, &corpus, &ImportConfig::default(), &Quiet).unwrap();
    let next = writer.catalog().next_id().unwrap();
    let records: Vec<(u64, String)> = writer
        .catalog()
        .range(0, next)
        .map(|r| {
            let (id, record) = r.unwrap();
            (id, record.prompt().unwrap().to_string())
        })
        .collect();
    drop(writer);
    assert!(records.len() > 4900, "{}", records.len());
    let with_syntax = records
        .iter()
        .filter(|(_, p)| p.contains(" - ") || p.contains(':') || p.contains('"'))
        .count();
    assert!(with_syntax > 400, "{with_syntax} prompts with query syntax");

    let reader = IndexReader::open(&dir, Some(&manifest)).unwrap();
    let mut bm25_misses = Vec::new();
    for (id, prompt) in &records {
        let hits = reader.text().search(prompt, 10).unwrap();
        if !first_or_tied_with_same_text(&reader, &hits, *id, prompt) {
            bm25_misses.push((*id, prompt.clone(), hits));
        }
    }
    assert!(
        bm25_misses.is_empty(),
        "{} of {} exact prompts are not BM25's first hit, e.g. {:?}",
        bm25_misses.len(),
        records.len(),
        &bm25_misses[..bm25_misses.len().min(3)]
    );

    let hybrid = SearchConfig {
        k: 3,
        ..SearchConfig::default()
    };
    let mut hybrid_misses = Vec::new();
    for (id, prompt) in &records {
        let hits = search_prompts(&reader, model, prompt, &hybrid).unwrap();
        let first = &hits[0];
        if first.id != *id && first.prompt != *prompt {
            hybrid_misses.push((*id, prompt.clone(), first.id, first.bm25_rank));
        }
    }
    assert!(
        hybrid_misses.is_empty(),
        "{} of {} exact prompts are not hybrid's first hit, e.g. {:?}",
        hybrid_misses.len(),
        records.len(),
        &hybrid_misses[..hybrid_misses.len().min(3)]
    );
}
