//! The command line end to end, in temporary directories, with the real model and data.

use crate::common;

use std::path::Path;

use common::{promptdex, sample_tsv, stderr, stdout};
use promptdex::store::{Catalog, Manifest, WriterLock};

fn import_json(corpus: &Path, index: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "import",
        corpus.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = promptdex(&args, corpus.parent().unwrap());
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap()
}

fn assert_clean_error(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected a failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "error should mention {needle:?}: {err}"
        );
    }
}

fn search_json(index: &Path, text: &str, mode: &str) -> Vec<serde_json::Value> {
    let out = promptdex(
        &[
            "search",
            text,
            "--index",
            index.to_str().unwrap(),
            "--json",
            "--mode",
            mode,
            "-k",
            "5",
        ],
        index.parent().unwrap(),
    );
    assert!(out.status.success(), "search failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn import_is_idempotent_and_search_answers_in_every_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("sample.tsv");
    let mut text = sample_tsv(400);
    // A duplicate differing only in case and spacing, and one exact duplicate.
    text.push_str("A   CUTE cat\t1\na cute cat\t2\n");
    std::fs::write(&corpus, text).unwrap();
    let index = tmp.path().join("index");

    let first = import_json(&corpus, &index, &[]);
    let added = first["added"].as_u64().unwrap();
    assert!(added > 350 && added <= 402, "added {added}");
    assert!(first["duplicates"].as_u64().unwrap() >= 2);
    assert_eq!(first["total_records"].as_u64().unwrap(), added);
    assert_eq!(first["vectors_indexed"].as_u64().unwrap(), added);

    let again = import_json(&corpus, &index, &[]);
    assert_eq!(
        again["added"].as_u64().unwrap(),
        0,
        "re-import added records"
    );
    assert_eq!(again["total_records"].as_u64().unwrap(), added);

    for mode in ["hybrid", "semantic", "bm25"] {
        let hits = search_json(&index, "a cute cat", mode);
        assert_eq!(hits.len(), 5, "{mode}");
        for key in [
            "id",
            "prompt",
            "score",
            "bm25_rank",
            "semantic_rank",
            "metadata",
        ] {
            assert!(
                hits[0].get(key).is_some(),
                "{mode}: no {key} in {}",
                hits[0]
            );
        }
        let top = hits[0]["prompt"].as_str().unwrap().to_lowercase();
        assert!(top.contains("cat"), "{mode}: top hit {top:?}");
        let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "{mode}: unsorted {scores:?}"
        );
    }
    let semantic = search_json(&index, "a cute cat", "semantic");
    assert!(
        semantic[0]["similarity"].as_f64().unwrap() > 0.99,
        "the exact prompt is indexed"
    );
    assert_eq!(semantic[0]["semantic_rank"].as_u64(), Some(1));

    let table = promptdex(
        &[
            "search",
            "castle on a hill",
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(stdout(&table).lines().count() >= 2 && stdout(&table).contains("prompt"));
}

#[test]
fn bad_corpora_are_clear_errors_and_leave_the_index_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let good = tmp.path().join("good.tsv");
    std::fs::write(&good, sample_tsv(50)).unwrap();
    import_json(&good, &index, &[]);

    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty.txt", Vec::new(), &["empty.txt", "empty"]),
        (
            "garbage.txt",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
            &["garbage.txt", "not a text file"],
        ),
        (
            "huge.txt",
            vec![b'a'; 1 << 20],
            &["huge.txt", "no usable prompt"],
        ),
        (
            "latin1.txt",
            b"a cat\nun caf\xe9 noir\n".to_vec(),
            &["latin1.txt", "line 2", "UTF-8"],
        ),
        (
            "nocol.csv",
            b"text,score\nhello,1\n".to_vec(),
            &["nocol.csv", "no `prompt` column", "text, score"],
        ),
    ];
    for (name, bytes, needles) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = promptdex(
            &[
                "import",
                path.to_str().unwrap(),
                "--index",
                index.to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert_clean_error(&out, needles);
        let hits = search_json(&index, "portrait", "hybrid");
        assert!(!hits.is_empty(), "index unusable after {name}");
    }
    // The 1 MB line is reported as skipped, not silently dropped.
    let huge = promptdex(
        &[
            "import",
            tmp.path().join("huge.txt").to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(stderr(&huge).contains("over the"), "{}", stderr(&huge));
    let missing = promptdex(
        &["import", "nope.tsv", "--index", index.to_str().unwrap()],
        tmp.path(),
    );
    assert_clean_error(&missing, &["nope.tsv"]);
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, "a red fox\n").unwrap();
    let lock = WriterLock::acquire(&index).unwrap();
    let out = promptdex(
        &[
            "import",
            corpus.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_clean_error(&out, &["is writing to this index"]);
    drop(lock);
    let out = promptdex(
        &[
            "import",
            corpus.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_index_of_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    Manifest::new("all-mpnet-base-v2", &"ab".repeat(32), 768)
        .write(&index)
        .unwrap();
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, "a red fox\n").unwrap();
    let out = promptdex(
        &[
            "import",
            corpus.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_clean_error(&out, &["all-mpnet-base-v2", "all-MiniLM-L6-v2"]);
    let out = promptdex(
        &["search", "fox", "--index", index.to_str().unwrap()],
        tmp.path(),
    );
    assert_clean_error(&out, &["all-mpnet-base-v2"]);
}

fn catalog_prompts(index: &Path) -> Vec<String> {
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let next = catalog.next_id().unwrap();
    let mut prompts: Vec<String> = catalog
        .range(0, next)
        .map(|r| r.unwrap().1.prompt().unwrap().to_string())
        .collect();
    prompts.sort();
    prompts
}

#[test]
fn a_killed_import_resumes_to_exactly_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.tsv");
    std::fs::write(&corpus, sample_tsv(1200)).unwrap();
    let clean = tmp.path().join("clean");
    import_json(&corpus, &clean, &["--chunk", "100"]);

    let killed = tmp.path().join("killed");
    let args = [
        "import",
        corpus.to_str().unwrap(),
        "--index",
        killed.to_str().unwrap(),
        "--chunk",
        "100",
    ];
    let kills = common::kill_until_done(&args, 700, 900);
    assert!(
        kills >= 2,
        "the test should kill the import at least twice, killed {kills}"
    );
    // A last run over the finished index adds nothing.
    let last = import_json(&corpus, &killed, &["--chunk", "100"]);
    assert_eq!(last["added"].as_u64().unwrap(), 0);
    assert_eq!(catalog_prompts(&killed), catalog_prompts(&clean));
    let hits_clean = search_json(&clean, "dragon", "hybrid");
    let hits_killed = search_json(&killed, "dragon", "hybrid");
    let prompts =
        |h: &[serde_json::Value]| h.iter().map(|x| x["prompt"].clone()).collect::<Vec<_>>();
    assert_eq!(prompts(&hits_clean).len(), prompts(&hits_killed).len());
    assert_eq!(
        last["total_records"],
        import_json(&corpus, &clean, &[])["total_records"]
    );
}

#[test]
fn a_bad_neighbour_ramp_is_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let index = index.to_str().unwrap();
    let refused = [
        ("0.9,0.2", "FLOOR 0.9 must be below FULL 0.2"),
        ("0.5,0.5", "must be below"),
        ("0.5", "is not FLOOR,FULL"),
        ("0.1,0.2,0.3", "is not FLOOR,FULL"),
        ("0.1,2", "`2` is not a similarity in [-1, 1]"),
        ("high,1", "`high` is not a similarity"),
    ];
    for command in ["generate", "eval", "serve"] {
        for (value, says) in refused {
            let flag = format!("--neighbour-ramp={value}");
            let mut args = vec![command, "--index", index, &flag];
            if command != "serve" {
                args.insert(1, "x.png");
            }
            let out = promptdex(&args, tmp.path());
            assert_clean_error(&out, &["--neighbour-ramp", says]);
        }
    }
    // A good ramp, negative floor included, gets past the flags to the (missing) index.
    let out = promptdex(
        &[
            "generate",
            "x.png",
            "--index",
            index,
            "--neighbour-ramp",
            "-0.2,0.5",
        ],
        tmp.path(),
    );
    assert_clean_error(&out, &["no index here"]);
    assert!(
        !stderr(&out).contains("--neighbour-ramp"),
        "{}",
        stderr(&out)
    );
}
