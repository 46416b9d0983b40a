//! The Milvus backend against a real server (milvus-lite, `common::milvus`): imports
//! with the real MiniLM, re-imports that add nothing, the engine's hybrid search with the
//! exact prompt first, BM25 and semantic search, images (tiny CLIP) that find themselves,
//! withdrawals, the manifest check, and the errors for an unreachable server.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::milvus::index_url;
use promptdex::indexer::{
    import_corpus, index_images, ImageIndexConfig, ImageIndexProgress, ImportConfig,
    ImportProgress, ImportReport,
};
use promptdex::ingest::{load_image, DecodeLimits};
use promptdex::models::load::load_image_encoder_from;
use promptdex::models::TextEmbedder;
use promptdex::search::{search_by_image, search_prompts, SearchConfig, SearchMode};
use promptdex::store::{dot, open_reader, open_writer, ImageModel, Location, Manifest, Space};

/// Progress nobody reads.
struct Quiet;

impl ImportProgress for Quiet {
    fn advance(&self, _: u64, _: u64, _: &ImportReport) {}
    fn message(&self, _: &str) {}
}

impl ImageIndexProgress for Quiet {
    fn start(&self, _: usize) {}
    fn advance(&self, _: usize) {}
    fn message(&self, _: &str) {}
}

fn manifest() -> Manifest {
    let model = common::minilm();
    Manifest::new(model.name(), model.weights_sha256(), model.dim())
}

fn location(url: &str) -> Location {
    url.parse().unwrap()
}

/// Imports the first `n` sample prompts into `url`.
fn import(url: &str, n: usize, dir: &Path) -> ImportReport {
    let corpus = dir.join(format!("sample-{n}.tsv"));
    std::fs::write(&corpus, common::sample_tsv(n)).unwrap();
    let writer = open_writer(&location(url), &manifest(), None).unwrap();
    let config = ImportConfig {
        chunk: 64,
        ..ImportConfig::default()
    };
    import_corpus(&*writer, common::minilm(), &corpus, &config, &Quiet).unwrap()
}

/// The sample's distinct prompts (as the import de-duplicates them) among its first `n` rows.
fn distinct_prompts(n: usize) -> Vec<String> {
    let text = common::sample_tsv(n);
    let mut seen = HashSet::new();
    text.lines()
        .skip(1)
        .filter_map(|line| line.split('\t').next())
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() && seen.insert(promptdex::ingest::dedup_key(p)))
        .collect()
}

#[test]
fn milvus_import_is_idempotent_and_searchable() {
    let url = index_url("import");
    let tmp = tempfile::tempdir().unwrap();
    let first = import(&url, 200, tmp.path());
    assert!(first.added > 150, "{first:?}");
    let again = import(&url, 200, tmp.path());
    assert_eq!(again.added, 0, "a re-import adds nothing: {again:?}");

    let reader = open_reader(&location(&url), Some(&manifest())).unwrap();
    let stats = reader.stats().unwrap();
    assert_eq!(stats.backend, "milvus");
    assert_eq!(stats.records, first.added);
    assert_eq!(stats.prompts, first.added);
    assert_eq!(stats.images, 0);

    let mut prompts = Vec::new();
    reader
        .for_each_prompt(&mut |id, p| prompts.push((id, p.to_string())))
        .unwrap();
    assert_eq!(prompts.len() as u64, first.added);
    let ids: HashSet<u64> = prompts.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), prompts.len(), "every record once");

    // The exact prompt comes first in the engine's hybrid ranking, and semantically.
    let minilm = common::minilm();
    for query in distinct_prompts(200).iter().step_by(37).take(5) {
        for mode in [SearchMode::Hybrid, SearchMode::Semantic, SearchMode::Bm25] {
            let config = SearchConfig {
                mode,
                ..SearchConfig::default()
            };
            let hits = search_prompts(&*reader, minilm, query, &config).unwrap();
            assert!(!hits.is_empty(), "{mode:?} {query:?}");
            assert_eq!(
                promptdex::ingest::normalize_prompt(&hits[0].prompt),
                promptdex::ingest::normalize_prompt(query),
                "{mode:?} ranks the query's own prompt first"
            );
            if mode == SearchMode::Semantic {
                assert!(hits[0].score > 0.99, "{}", hits[0].score);
            }
            let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            assert!(
                scores.iter().all(|s| *s > 0.0),
                "{mode:?} scores {scores:?}"
            );
        }
    }

    // BM25 hits share a word with the query; positive scores, best first.
    let word = prompts
        .iter()
        .flat_map(|(_, p)| p.split(|c: char| !c.is_alphanumeric()))
        .find(|w| w.len() >= 6)
        .unwrap()
        .to_lowercase();
    let hits = reader.bm25(&word, 10).unwrap();
    assert!(!hits.is_empty());
    let records = reader
        .records(&hits.iter().map(|h| h.id).collect::<Vec<_>>())
        .unwrap();
    for record in records {
        let record = record.expect("a BM25 hit is a live record");
        assert!(
            record.prompt.to_lowercase().contains(&word),
            "{}",
            record.prompt
        );
        assert_eq!(record.metadata["kind"], "prompt");
    }
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // The mean prompt is the mean of the stored vectors.
    let texts: Vec<&str> = prompts.iter().map(|(_, p)| p.as_str()).collect();
    let vectors = minilm.embed(&texts).unwrap();
    let mut mean = vec![0.0f32; minilm.dim()];
    for v in &vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    let norm = dot(&mean, &mean).sqrt();
    mean.iter_mut().for_each(|m| *m /= norm);
    let stored = reader.mean_prompt().expect("a mean prompt");
    assert!(dot(&mean, stored) > 0.9999, "{}", dot(&mean, stored));
}

#[test]
fn milvus_refuses_an_index_of_another_model() {
    let url = index_url("models");
    let tmp = tempfile::tempdir().unwrap();
    import(&url, 20, tmp.path());
    let mut other = manifest();
    other.text_model_sha256 = "0".repeat(64);
    let err = open_writer(&location(&url), &other, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("built with text model"), "{err}");
    assert!(err.contains(url.trim_start_matches("milvus://")), "{err}");
    let err = open_reader(&location(&url), Some(&other))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("built with text model"), "{err}");

    let missing = index_url("never_made");
    let err = open_reader(&location(&missing), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no index here"), "{err}");
}

#[test]
fn milvus_unreachable_server_fails_fast_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("milvus://127.0.0.1:{port}/nobody?token=secret");
    let clock = Instant::now();
    let err = open_reader(&location(&url), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        clock.elapsed() < Duration::from_secs(12),
        "{:?}",
        clock.elapsed()
    );
    assert!(
        err.contains(&format!("milvus://127.0.0.1:{port}/nobody")),
        "{err}"
    );
    assert!(err.contains("cannot reach"), "{err}");
    assert!(
        !err.contains("secret"),
        "the token stays out of messages: {err}"
    );
    let err = open_writer(&location(&url), &manifest(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot reach"), "{err}");
}

/// A few real SD images (three with an embedded prompt) and one duplicate of another's bytes.
fn image_folder(dest: &Path) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(dest).unwrap();
    let mut files = Vec::new();
    for (set, name) in [
        ("sdcpp_lovely_cat", "f32.png"),
        ("sdcpp_lovely_cat", "cat_with_sd_cpp_42.png"),
        (
            "diffusiondb_samples",
            "0149b02d-2714-4bbd-af23-22d9b85f928e.png",
        ),
        ("kaggle_sample", "227ef0887.png"),
    ] {
        let from = common::data_dir()
            .join("eval")
            .join(set)
            .join("images")
            .join(name);
        std::fs::copy(from, dest.join(name)).unwrap();
        files.push(dest.join(name));
    }
    files
}

#[test]
fn milvus_images_find_themselves_and_vanish() {
    let url = index_url("images");
    let tmp = tempfile::tempdir().unwrap();
    import(&url, 50, tmp.path());
    let folder = tmp.path().join("images");
    let files = image_folder(&folder);
    std::fs::copy(&files[0], folder.join("copy_of_f32.png")).unwrap();

    let loaded = load_image_encoder_from(&common::tiny_clip_dir(), "clip-vit-b-32").unwrap();
    let model = ImageModel::of(&*loaded.encoder, &loaded.weights_sha256);
    let text = loaded.encoder.text_embedder().unwrap();
    let index = |expect_added: usize| {
        let mut writer = open_writer(&location(&url), &manifest(), None).unwrap();
        let report = index_images(
            &mut *writer,
            &*loaded.encoder,
            common::minilm(),
            &model,
            &folder,
            &ImageIndexConfig::default(),
            &Quiet,
        )
        .unwrap();
        assert_eq!(report.added, expect_added, "{report:?}");
        writer.sync(&mut |_| {}).unwrap();
        report
    };
    let first = index(5);
    assert!(first.with_prompt >= 2, "{first:?}");
    assert!(first.prompts_aligned >= 50, "{first:?}");
    index(0);

    let reader = open_reader(&location(&url), None).unwrap();
    let stats = reader.stats().unwrap();
    assert_eq!(
        stats.images, 4,
        "two files with the same bytes are one record: {stats:?}"
    );
    assert!(reader.has_vectors(Space::Images) && reader.has_vectors(Space::Aligned));
    assert!(stats.aligned >= 50, "{stats:?}");
    for file in &files {
        let picture = load_image(file, &DecodeLimits::default()).unwrap();
        let found = search_by_image(&*reader, &*loaded.encoder, &picture, 3, 64).unwrap();
        assert!(found.images[0].similarity > 0.999, "{:?}", found.images[0]);
        let name = Path::new(&found.images[0].path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let own = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name == own || (own == "f32.png" && name == "copy_of_f32.png"),
            "{name} for {own}"
        );
        assert!(!found.prompts.is_empty(), "cross-modal prompts for {own}");
    }
    let query = text.embed(&["a cat"]).unwrap().remove(0);
    assert!(!reader
        .nearest(Space::Aligned, &query, 5, 64)
        .unwrap()
        .is_empty());
    drop(reader);

    // A vanished file is withdrawn; the copy keeps the shared record alive until it goes too.
    std::fs::remove_file(&files[3]).unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    let gone = index(0);
    assert_eq!(gone.vanished, 2, "{gone:?}");
    let reader = open_reader(&location(&url), None).unwrap();
    assert_eq!(reader.stats().unwrap().images, 3);
    std::fs::remove_file(folder.join("copy_of_f32.png")).unwrap();
    drop(reader);
    index(0);
    let reader = open_reader(&location(&url), None).unwrap();
    assert_eq!(reader.stats().unwrap().images, 2);
    let picture = load_image(&files[1], &DecodeLimits::default()).unwrap();
    let found = search_by_image(&*reader, &*loaded.encoder, &picture, 10, 64).unwrap();
    assert_eq!(found.images.len(), 2, "withdrawn images are not found");
}
