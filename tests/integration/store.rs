//! The store's derived indexes through the library: rebuilt from the catalog when damaged,
//! readers that create nothing, graph generations kept for readers, withdrawn records skipped
//! without losing hits.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use promptdex::indexer::{import_corpus, ImportConfig, ImportProgress, ImportReport};
use promptdex::models::TextEmbedder;
use promptdex::search::{search_prompts, SearchConfig, SearchMode};
use promptdex::store::{IndexReader, IndexWriter, Manifest};

/// Collects the import's messages.
#[derive(Default)]
struct Messages(Mutex<Vec<String>>);

impl ImportProgress for Messages {
    fn advance(&self, _: u64, _: u64, _: &ImportReport) {}
    fn message(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

impl Messages {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn manifest() -> Manifest {
    let model = common::minilm();
    Manifest::new(model.name(), model.weights_sha256(), model.dim())
}

/// Imports the first `n` sample prompts into `dir`; returns the import's messages.
fn import(dir: &Path, n: usize) -> Vec<String> {
    let corpus = dir.with_extension(format!("{n}.tsv"));
    std::fs::write(&corpus, common::sample_tsv(n)).unwrap();
    let writer = IndexWriter::open(dir, &manifest()).unwrap();
    let messages = Messages::default();
    let config = ImportConfig {
        chunk: 100,
        ..ImportConfig::default()
    };
    import_corpus(&writer, common::minilm(), &corpus, &config, &messages).unwrap();
    messages.take()
}

/// Every file and folder under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().to_path_buf())
        .collect();
    paths.sort();
    paths
}

/// The graph dump files of the prompt graph, by name.
fn dump_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("vectors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".hnsw."))
        .collect();
    names.sort();
    names
}

fn current_dump(dir: &Path) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("vectors/state.json")).unwrap()).unwrap();
    state["basename"].as_str().unwrap().to_string()
}

/// What searches answer on the index at `dir`: for each of `queries`, the BM25 ids and scores
/// and the semantic ids, plus the text index's and the graph's sorted ids.
fn answers(dir: &Path, queries: &[String]) -> (Vec<String>, Vec<u64>, Vec<u64>) {
    let reader = IndexReader::open(dir, Some(&manifest())).unwrap();
    let mut out = Vec::new();
    for q in queries {
        let bm25 = reader.text().search(q, 10).unwrap();
        out.push(format!("{:?}", bm25));
        let config = SearchConfig {
            mode: SearchMode::Semantic,
            ..SearchConfig::default()
        };
        let hits = search_prompts(&reader, common::minilm(), q, &config).unwrap();
        out.push(format!(
            "{:?}",
            hits.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>()
        ));
    }
    let mut text_ids = reader.text().ids().unwrap();
    text_ids.sort();
    let mut graph_ids = reader.vectors().unwrap().ids();
    graph_ids.sort();
    (out, text_ids, graph_ids)
}

/// Every stored vector's nearest neighbour in the graph is its own record.
fn assert_each_vector_finds_itself(dir: &Path) {
    let writer = IndexWriter::open(dir, &manifest()).unwrap();
    let catalog = writer.catalog();
    let stored: Vec<(u64, Vec<f32>)> = catalog
        .text_vectors(0, catalog.next_id().unwrap())
        .collect::<Result<_, _>>()
        .unwrap();
    drop(writer);
    let reader = IndexReader::open(dir, Some(&manifest())).unwrap();
    let graph = reader.vectors().unwrap();
    assert_eq!(graph.len(), stored.len());
    for (id, v) in &stored {
        let hits = graph.search(v, 3, 64).unwrap();
        assert!(
            hits.iter().any(|h| h.id == *id && h.similarity > 0.9999),
            "record {id} not found as its own neighbour: {hits:?}"
        );
    }
}

fn queries() -> Vec<String> {
    common::sample_tsv(420)
        .lines()
        .skip(401)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

#[test]
fn a_damaged_graph_is_rebuilt_from_the_catalog_by_the_next_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    import(&dir, 400);
    let queries = queries();
    let before = answers(&dir, &queries);

    // Bytes in the middle of the dump's vectors flipped (the files keep their size).
    let data = dir
        .join("vectors")
        .join(format!("{}.hnsw.data", current_dump(&dir)));
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&data, &bytes).unwrap();
    let err = IndexReader::open(&dir, Some(&manifest()))
        .err()
        .expect("a reader refuses a damaged graph")
        .to_string();
    assert!(
        err.contains("damaged") && err.contains("promptdex import"),
        "{err}"
    );

    // The same import again: nothing to add, but the graph is rebuilt and the user told.
    let messages = import(&dir, 400);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("prompt graph") && m.contains("rebuilding it from the catalog")),
        "{messages:?}"
    );
    let after = answers(&dir, &queries);
    assert_eq!(after.1, before.1, "text index untouched");
    assert_eq!(after.2, before.2, "every record back in the graph, once");
    assert_eq!(after.0, before.0, "the same answers as before the damage");
    assert_each_vector_finds_itself(&dir);

    // A dump that is gone entirely, and then a state.json that is not JSON.
    for f in dump_files(&dir) {
        std::fs::remove_file(dir.join("vectors").join(f)).unwrap();
    }
    assert!(IndexReader::open(&dir, Some(&manifest())).is_err());
    let messages = import(&dir, 400);
    assert!(
        messages.iter().any(|m| m.contains("is missing")),
        "{messages:?}"
    );
    assert_eq!(answers(&dir, &queries), before);
    std::fs::write(dir.join("vectors/state.json"), "{\"basename\": ").unwrap();
    let err = IndexReader::open(&dir, Some(&manifest()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("state.json is damaged"), "{err}");
    let messages = import(&dir, 400);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("state.json is damaged") && m.contains("rebuilding")),
        "{messages:?}"
    );
    assert_eq!(answers(&dir, &queries), before);
    assert_each_vector_finds_itself(&dir);
}

#[test]
fn a_damaged_text_index_is_rebuilt_from_the_catalog_by_the_next_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    import(&dir, 400);
    let queries = queries();
    let before = answers(&dir, &queries);

    // The postings of a segment altered in the middle (same size).
    let postings = std::fs::read_dir(dir.join("text"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .expect("a segment's postings");
    let mut bytes = std::fs::read(&postings).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xa5;
    }
    std::fs::write(&postings, &bytes).unwrap();
    let err = IndexReader::open(&dir, Some(&manifest()))
        .err()
        .expect("a reader refuses a damaged text index")
        .to_string();
    assert!(
        err.contains("text index") && err.contains("promptdex import"),
        "{err}"
    );
    let messages = import(&dir, 400);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("checksums") && m.contains("rebuilding it from the catalog")),
        "{messages:?}"
    );
    assert_eq!(answers(&dir, &queries), before);

    // meta.json that is not JSON.
    std::fs::write(dir.join("text/meta.json"), "{").unwrap();
    let err = IndexReader::open(&dir, Some(&manifest()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("text index cannot be read"), "{err}");
    let messages = import(&dir, 400);
    assert!(
        messages.iter().any(|m| m.contains("rebuilding it")),
        "{messages:?}"
    );
    assert_eq!(answers(&dir, &queries), before);
}

#[test]
fn readers_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder that is not an index.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "hello").unwrap();
    let err = IndexReader::open(&plain, None).err().unwrap().to_string();
    assert!(
        err.contains("no index here") && err.contains("plain"),
        "{err}"
    );
    assert_eq!(tree(&plain), [PathBuf::new(), PathBuf::from("notes.txt")]);
    let missing = tmp.path().join("missing");
    assert!(IndexReader::open(&missing, None).is_err());
    assert!(!missing.exists());

    // A real index: opening and searching it changes no file or folder.
    let dir = tmp.path().join("index");
    import(&dir, 100);
    let files = tree(&dir);
    answers(&dir, &queries()[..2]);
    assert_eq!(tree(&dir), files);

    // An index whose text index was never written reads as empty and gets no `text/`.
    std::fs::remove_dir_all(dir.join("text")).unwrap();
    let reader = IndexReader::open(&dir, Some(&manifest())).unwrap();
    assert_eq!(reader.text().num_docs(), 0);
    assert!(!dir.join("text").exists());
}

#[test]
fn the_previous_graph_generation_is_kept_until_the_next_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let files = |base: &str| [format!("{base}.hnsw.data"), format!("{base}.hnsw.graph")];
    import(&dir, 100);
    let first = current_dump(&dir);
    assert_eq!(dump_files(&dir), files(&first));
    import(&dir, 200);
    let second = current_dump(&dir);
    assert_ne!(second, first);
    let mut both = [files(&first), files(&second)].concat();
    both.sort();
    assert_eq!(dump_files(&dir), both, "the previous dump is still there");
    // A reader that read the old state just before the switch can still load its dump.
    let reader = IndexReader::open(&dir, Some(&manifest())).unwrap();
    assert_eq!(reader.vectors().unwrap().len(), 200);
    drop(reader);
    import(&dir, 300);
    let third = current_dump(&dir);
    let mut kept = [files(&second), files(&third)].concat();
    kept.sort();
    assert_eq!(
        dump_files(&dir),
        kept,
        "the one before the previous is gone"
    );
}

/// A `size`x`size` PNG of seeded noise at `path`.
fn write_noise_png(path: &Path, seed: u64, size: u32) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let img = image::RgbImage::from_fn(size, size, |_, _| image::Rgb(rng.random::<[u8; 3]>()));
    img.save(path).unwrap();
}

fn index_folder(folder: &Path, index: &Path) -> serde_json::Value {
    let out = common::promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        index.parent().unwrap(),
    );
    assert!(
        out.status.success(),
        "index failed: {}",
        common::stderr(&out)
    );
    serde_json::from_str(common::stdout(&out).lines().last().unwrap()).unwrap()
}

#[test]
fn prompt_search_fills_k_past_withdrawn_records() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("images");
    std::fs::create_dir_all(&folder).unwrap();
    let n = 24;
    for i in 0..n {
        write_noise_png(&folder.join(format!("fox{i:02}.png")), i, 48);
        std::fs::write(
            folder.join(format!("fox{i:02}.txt")),
            format!("a watercolor fox in the snow, study number {i}"),
        )
        .unwrap();
    }
    let index = tmp.path().join("index");
    index_folder(&folder, &index);
    // New pixels under the same names and prompts: every old record is withdrawn, and its
    // prompt vector (the same as its successor's) stays in the graph until a rebuild.
    for i in 0..n {
        write_noise_png(&folder.join(format!("fox{i:02}.png")), 1000 + i, 48);
    }
    index_folder(&folder, &index);
    let reader = IndexReader::open(&index, None).unwrap();
    assert_eq!(reader.text().num_docs(), n);
    assert_eq!(reader.vectors().unwrap().len(), 2 * n as usize);
    for mode in [SearchMode::Semantic, SearchMode::Hybrid, SearchMode::Bm25] {
        let config = SearchConfig {
            k: 20,
            depth: 20,
            mode,
            ..SearchConfig::default()
        };
        let hits = search_prompts(
            &reader,
            common::minilm(),
            "a watercolor fox in the snow",
            &config,
        )
        .unwrap();
        let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20, "{mode:?}: {} hits", hits.len());
        for id in ids {
            assert!(
                reader.text().contains(id).unwrap(),
                "{mode:?}: {id} is withdrawn"
            );
        }
    }
}
