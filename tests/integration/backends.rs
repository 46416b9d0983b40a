//! The behaviour that must not depend on the backend, run against both: the embedded index
//! directory and a Milvus index on a real milvus-lite server (`common::milvus`). Each test
//! runs its scenario once per backend, through the real binary.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{milvus, models_dir, photos_dir, promptdex, run_json, sample_tsv, stderr};
use promptdex::store::{open_reader, open_writer, Location, Manifest};
use serde_json::Value;

/// Where a scenario keeps its index.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Milvus,
}

impl Backend {
    /// A fresh index location for the test `name` (a folder under `tmp`, or a collection
    /// set of its own on the test server).
    fn index(self, tmp: &Path, name: &str) -> String {
        match self {
            Backend::Embedded => tmp.join(name).to_str().unwrap().to_string(),
            Backend::Milvus => milvus::index_url(&format!("both_{name}")),
        }
    }
}

/// Runs `scenario` on each backend.
fn on_both(scenario: impl Fn(Backend, &Path)) {
    for backend in [Backend::Embedded, Backend::Milvus] {
        let tmp = tempfile::tempdir().unwrap();
        eprintln!("--- {backend:?}");
        scenario(backend, tmp.path());
    }
}

fn import(corpus: &Path, index: &str, extra: &[&str], cwd: &Path) -> Value {
    let mut args = vec![
        "import",
        corpus.to_str().unwrap(),
        "--index",
        index,
        "--json",
    ];
    args.extend_from_slice(extra);
    run_json(&args, cwd)
}

/// Every prompt the index holds, as a set (a prompt stored twice would show in the count).
fn prompts_of(index: &str) -> (BTreeSet<String>, usize) {
    let location: Location = index.parse().unwrap();
    let reader = open_reader(&location, None).unwrap();
    let mut set = BTreeSet::new();
    let mut count = 0;
    reader
        .for_each_prompt(&mut |_, prompt| {
            count += 1;
            set.insert(prompt.to_string());
        })
        .unwrap();
    (set, count)
}

fn corpus(tmp: &Path, rows: usize) -> std::path::PathBuf {
    let path = tmp.join("corpus.tsv");
    std::fs::write(&path, sample_tsv(rows)).unwrap();
    path
}

#[test]
fn importing_again_adds_nothing_and_stats_count_every_record_once() {
    on_both(|backend, tmp| {
        let corpus = corpus(tmp, 400);
        let index = backend.index(tmp, "reimport");
        let first = import(&corpus, &index, &[], tmp);
        let added = first["added"].as_u64().unwrap();
        assert!(added > 300, "{first}");
        let again = import(&corpus, &index, &[], tmp);
        assert_eq!(again["added"], 0, "{again}");
        assert_eq!(
            again["duplicates"].as_u64().unwrap(),
            400 - first["rejected"].as_u64().unwrap(),
            "{again}"
        );
        let stats = run_json(&["stats", "--index", &index, "--json"], tmp);
        assert_eq!(stats["records"].as_u64(), Some(added), "{stats}");
        assert_eq!(stats["prompts"].as_u64(), Some(added), "{stats}");
        assert_eq!(stats["images"].as_u64(), Some(0), "{stats}");
        let (set, count) = prompts_of(&index);
        assert_eq!((set.len(), count), (added as usize, added as usize));
        // The report's index section counts the same prompts.
        std::fs::write(
            tmp.join("empty.json"),
            r#"{"images":0,"evaluated":0,"leave_one_out":false,"methods":[],
                "latency_p50_ms":0.0,"missing":[],"per_image":[]}"#,
        )
        .unwrap();
        let out = promptdex(
            &["report", "empty.json", "--index", &index, "--out", "rep"],
            tmp,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let page = std::fs::read_to_string(tmp.join("rep/index.html")).unwrap();
        assert!(
            page.contains(&format!("</code>: {added} prompts.")),
            "{page}"
        );
    });
}

#[test]
fn the_exact_prompt_comes_first_in_hybrid_search() {
    on_both(|backend, tmp| {
        let corpus = corpus(tmp, 500);
        let index = backend.index(tmp, "exact");
        import(&corpus, &index, &[], tmp);
        let (prompts, _) = prompts_of(&index);
        for query in prompts.iter().step_by(25) {
            let hits = run_json(
                &["search", query, "--index", &index, "-k", "5", "--json"],
                tmp,
            );
            assert_eq!(hits[0]["prompt"].as_str(), Some(query.as_str()), "{hits}");
            let semantic = run_json(
                &[
                    "search", query, "--index", &index, "-k", "5", "--mode", "semantic", "--json",
                ],
                tmp,
            );
            assert_eq!(
                semantic[0]["prompt"].as_str(),
                Some(query.as_str()),
                "{semantic}"
            );
        }
    });
}

#[test]
fn an_image_search_finds_the_image_itself() {
    on_both(|backend, tmp| {
        let photos = photos_dir();
        let index = backend.index(tmp, "images");
        let report = run_json(
            &[
                "index",
                photos.to_str().unwrap(),
                "--index",
                &index,
                "--json",
            ],
            tmp,
        );
        let added = report["added"].as_u64().unwrap();
        assert!(added >= 4, "{report}");
        let again = run_json(
            &[
                "index",
                photos.to_str().unwrap(),
                "--index",
                &index,
                "--json",
            ],
            tmp,
        );
        assert_eq!(again["added"], 0, "{again}");
        assert_eq!(again["unchanged"].as_u64(), Some(added), "{again}");
        for entry in std::fs::read_dir(&photos).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "jpg" && e != "png") {
                continue;
            }
            let found = run_json(
                &[
                    "search",
                    "--image",
                    path.to_str().unwrap(),
                    "--index",
                    &index,
                    "-k",
                    "3",
                    "--json",
                ],
                tmp,
            );
            let first = &found["images"][0];
            assert_eq!(
                first["path"].as_str(),
                Some(path.canonicalize().unwrap().to_str().unwrap()),
                "{found}"
            );
            assert!(first["similarity"].as_f64().unwrap() > 0.99, "{found}");
        }
        let stats = run_json(&["stats", "--index", &index, "--json"], tmp);
        assert_eq!(stats["images"].as_u64(), Some(added), "{stats}");
    });
}

#[test]
fn an_index_built_with_another_text_model_is_refused_by_name() {
    on_both(|backend, tmp| {
        let corpus = corpus(tmp, 50);
        let index = backend.index(tmp, "othermodel");
        import(&corpus, &index, &[], tmp);
        let location: Location = index.parse().unwrap();
        let other = Manifest::new("e5-small-v2", &"ab".repeat(32), 384);
        let err = open_writer(&location, &other, None)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("all-MiniLM-L6-v2") && err.contains("e5-small-v2"),
            "{err}"
        );
        let err = open_reader(&location, Some(&other))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("e5-small-v2"), "{err}");
    });
}

/// The prompts a full, unsharded import stores.
fn reference_set(corpus: &Path, tmp: &Path) -> BTreeSet<String> {
    let index = Backend::Embedded.index(tmp, "reference");
    import(corpus, &index, &[], tmp);
    prompts_of(&index).0
}

#[test]
fn a_shard_worker_killed_mid_run_and_rerun_leaves_the_exact_record_set() {
    on_both(|backend, tmp| {
        let corpus = corpus(tmp, 1500);
        let expected = reference_set(&corpus, tmp);
        let index = backend.index(tmp, "killed");
        let path = corpus.to_str().unwrap();
        let base = [
            "import", path, "--index", &index, "--chunk", "64", "--shard",
        ];
        let one: Vec<&str> = base.iter().copied().chain(["1/2"]).collect();
        let kills = common::kill_until_done(&one, 1500, 400);
        assert!(kills >= 1, "the worker was never killed mid-run");
        import(&corpus, &index, &["--shard", "2/2"], tmp);
        // A shard rerun after both finished adds nothing.
        let rerun = import(&corpus, &index, &["--shard", "1/2"], tmp);
        assert_eq!(rerun["added"], 0, "{rerun}");
        let (set, count) = prompts_of(&index);
        assert_eq!(count, set.len(), "a prompt is stored twice");
        assert_eq!(set, expected);
    });
}

#[test]
fn two_workers_of_the_same_and_of_other_shards_at_once_store_every_record_once() {
    on_both(|backend, tmp| {
        let corpus = corpus(tmp, 1200);
        let expected = reference_set(&corpus, tmp);
        let index = backend.index(tmp, "together");
        let path = corpus.to_str().unwrap();
        let workers: Vec<_> = ["1/2", "2/2", "2/2"]
            .iter()
            .map(|shard| {
                Command::new(env!("CARGO_BIN_EXE_promptdex"))
                    .args([
                        "import", path, "--index", &index, "--chunk", "128", "--shard", shard,
                    ])
                    .env("PROMPTDEX_MODELS", models_dir())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for worker in workers {
            let out = worker.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (set, count) = prompts_of(&index);
        assert_eq!(count, set.len(), "a prompt is stored twice");
        assert_eq!(set, expected);
    });
}

#[test]
fn bad_shards_are_refused_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = corpus(tmp.path(), 10);
    let index = tmp.path().join("index");
    for bad in ["3/2", "0/2", "1/0", "x"] {
        let out = promptdex(
            &[
                "import",
                corpus.to_str().unwrap(),
                "--index",
                index.to_str().unwrap(),
                "--shard",
                bad,
            ],
            tmp.path(),
        );
        assert!(!out.status.success(), "{bad} accepted");
        let err = stderr(&out);
        assert!(
            err.contains("--shard") && !err.contains("panicked"),
            "{bad}: {err}"
        );
    }
    assert!(!index.exists(), "a refused run created the index");
}
