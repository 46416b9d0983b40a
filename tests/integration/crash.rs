//! Crash consistency of all three stores: the real binary killed (SIGKILL) at seeded random
//! moments of `import` and `index`, then run again to completion, leaves the catalog, the text
//! index and every vector graph exactly as an uninterrupted run does.
//!
//! Each test grows its input in 20 steps. At each step an uninterrupted run brings the clean
//! index up to date and is timed; the same run on the other index is killed after a delay drawn
//! from a seeded RNG in `0..that time` (model loading, embedding, commits, the text sync and the
//! graph dump are all hit), then run again to completion, and both indexes are compared.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use promptdex::store::{Catalog, IndexReader, VectorIndex, Watermark};

/// Moments killed per test.
const STEPS: usize = 20;

fn command(args: &[&str]) -> Command {
    common::minilm_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promptdex"));
    cmd.args(args)
        .env("PROMPTDEX_MODELS", common::models_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs to completion (which must succeed); returns how long it took.
fn run(args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = command(args).output().expect("running promptdex");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// Starts a run and kills it with SIGKILL after `delay`; true when it was still running.
fn run_killed(args: &[&str], delay: Duration) -> bool {
    let mut child = command(args).spawn().expect("starting promptdex");
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    if running {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    running
}

/// An index described without its record ids (which a resumed run need not share): each
/// store's records as sorted JSON, after checking the store's own consistency.
#[derive(Debug, PartialEq)]
struct Summary {
    catalog: Vec<String>,
    text: Vec<String>,
    prompt_graph: Vec<String>,
    image_graph: Vec<String>,
}

/// The records behind `ids`, sorted; fails on a duplicate or unknown id.
fn records_of(
    what: &str,
    ids: &[u64],
    records: &HashMap<u64, String>,
    expected: &HashSet<u64>,
) -> Vec<String> {
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "{what}: a record id is there twice"
    );
    assert_eq!(&unique, expected, "{what}: not the catalog's records");
    let mut out: Vec<String> = ids.iter().map(|id| records[id].clone()).collect();
    out.sort();
    out
}

/// Checks that every vector in `vectors` is in `graph` and is its own nearest neighbour.
fn assert_findable(what: &str, graph: &VectorIndex, vectors: &HashMap<u64, Vec<f32>>) {
    assert_eq!(graph.len(), vectors.len(), "{what}: vector count");
    for (id, v) in vectors {
        let hits = graph.search(v, 3, 64).unwrap();
        assert!(
            hits.iter().any(|h| h.id == *id && h.similarity > 0.9999),
            "{what}: record {id} is not its own nearest neighbour: {hits:?}"
        );
    }
}

fn summary(dir: &Path) -> Summary {
    let catalog = Catalog::open(&dir.join("catalog")).unwrap();
    let next = catalog.next_id().unwrap();
    let watermark = Watermark {
        records: next,
        deletions: catalog.next_deletion().unwrap(),
    };
    let records: HashMap<u64, String> = catalog
        .range(0, next)
        .map(|r| {
            let (id, record) = r.unwrap();
            (id, serde_json::to_string(&record).unwrap())
        })
        .collect();
    let withdrawn: HashSet<u64> = catalog
        .deletions(0, watermark.deletions)
        .unwrap()
        .into_iter()
        .collect();
    let text_vectors: HashMap<u64, Vec<f32>> =
        catalog.text_vectors(0, next).map(Result::unwrap).collect();
    let image_vectors: HashMap<u64, Vec<f32>> =
        catalog.image_vectors(0, next).map(Result::unwrap).collect();
    drop(catalog);

    let reader = IndexReader::open(dir, None).unwrap();
    let text = reader.text();
    assert_eq!(text.watermark().unwrap(), watermark, "text index watermark");
    let text_ids = text.ids().unwrap();
    assert_eq!(
        text_ids.len() as u64,
        text.num_docs(),
        "text document count"
    );
    let live: HashSet<u64> = records
        .keys()
        .copied()
        .filter(|id| !withdrawn.contains(id))
        .collect();
    let graph_summary = |what: &str, graph: Option<&VectorIndex>, vectors| match graph {
        Some(graph) => {
            let upto = VectorIndex::synced_upto(&dir.join(what)).unwrap();
            assert_eq!(upto, next, "{what}: watermark");
            assert_findable(what, graph, vectors);
            let keys: HashSet<u64> = vectors.keys().copied().collect();
            records_of(what, &graph.ids(), &records, &keys)
        }
        None => {
            assert!(vectors.is_empty(), "{what}: vectors but no graph");
            Vec::new()
        }
    };
    Summary {
        text: records_of("text index", &text_ids, &records, &live),
        prompt_graph: graph_summary("vectors", reader.vectors(), &text_vectors),
        image_graph: graph_summary("image-vectors", reader.image_vectors(), &image_vectors),
        catalog: {
            let mut all: Vec<String> = records.into_values().collect();
            all.sort();
            all
        },
    }
}

/// Kills the run at `STEPS` seeded moments, checking after each resume; returns the kills.
fn kill_and_compare(
    seed: u64,
    clean: &Path,
    killed: &Path,
    mut step_args: impl FnMut(usize, &Path) -> Vec<String>,
) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0;
    for step in 0..STEPS {
        let args = step_args(step, clean);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let took = run(&args);
        let delay = rng.random_range(0..took.as_millis().max(1) as u64);
        let args = step_args(step, killed);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kills += usize::from(run_killed(&args, Duration::from_millis(delay)));
        run(&args);
        assert_eq!(
            summary(killed),
            summary(clean),
            "step {step}: killed after {delay} ms"
        );
    }
    kills
}

#[test]
fn killed_imports_leave_every_store_as_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let all = common::sample_tsv(2000);
    let lines: Vec<&str> = all.lines().collect();
    let (clean, killed) = (tmp.path().join("clean"), tmp.path().join("killed"));
    let per_step = (lines.len() - 1) / STEPS;
    let kills = kill_and_compare(7, &clean, &killed, |step, index| {
        // Each step imports a longer prefix of the corpus, in small chunks.
        let corpus = tmp.path().join(format!("corpus-{step:02}.tsv"));
        if !corpus.exists() {
            let end = 1 + per_step * (step + 1);
            std::fs::write(&corpus, lines[..end].join("\n") + "\n").unwrap();
        }
        [
            "import",
            corpus.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--chunk",
            "25",
        ]
        .map(String::from)
        .to_vec()
    });
    eprintln!("import: {kills} of {STEPS} runs killed before they finished");
    assert!(kills >= STEPS / 2, "only {kills} runs were killed");
}

/// A `size`x`size` PNG of seeded noise at `path`.
fn write_noise_png(path: &Path, seed: u64, size: u32) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let img = image::RgbImage::from_fn(size, size, |_, _| image::Rgb(rng.random::<[u8; 3]>()));
    img.save(path).unwrap();
}

#[test]
fn killed_index_runs_leave_every_store_as_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("images");
    std::fs::create_dir_all(&folder).unwrap();
    let (clean, killed) = (tmp.path().join("clean"), tmp.path().join("killed"));
    let mut prepared = HashSet::new();
    let kills = kill_and_compare(11, &clean, &killed, |step, index| {
        // Each step adds two images (one with a sidecar prompt); every third step also
        // changes one and every fifth removes one, so records are withdrawn too.
        if prepared.insert(step) {
            for j in 0..2 {
                let n = 2 * step + j;
                write_noise_png(&folder.join(format!("img{n:03}.png")), n as u64, 40);
                if j == 0 {
                    let prompt = format!("a lighthouse at dusk, oil painting, plate {n}");
                    std::fs::write(folder.join(format!("img{n:03}.txt")), prompt).unwrap();
                }
            }
            if step % 3 == 2 {
                write_noise_png(
                    &folder.join(format!("img{:03}.png", step)),
                    500 + step as u64,
                    40,
                );
            }
            if step % 5 == 4 {
                std::fs::remove_file(folder.join(format!("img{:03}.png", step - 3))).unwrap();
            }
        }
        [
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--batch",
            "2",
        ]
        .map(String::from)
        .to_vec()
    });
    eprintln!("index: {kills} of {STEPS} runs killed before they finished");
    assert!(kills >= STEPS / 2, "only {kills} runs were killed");
}
