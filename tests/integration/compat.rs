//! Indexes written before the backend seam still open and grow unchanged: a small index made by
//! commit d45ff02 (`scripts/make_compat_index.sh d45ff02`, checked in) is searched by text and
//! by image, counted, and written to by today's build.

use crate::common;

use std::path::Path;

use common::{root, run_json, sample_tsv};

/// Unpacks the old index into `tmp/idx`.
fn old_index(tmp: &Path) -> String {
    let archive = root().join("tests/fixtures/compat/index-d45ff02.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(tmp)
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {}", archive.display());
    tmp.join("idx").to_str().unwrap().to_string()
}

#[test]
fn an_index_written_by_an_older_build_opens_and_grows_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let index = old_index(tmp.path());
    let stats = run_json(&["stats", "--index", &index, "--json"], tmp.path());
    assert_eq!(stats["records"], 43, "{stats}");
    assert_eq!(stats["images"], 3, "{stats}");
    assert_eq!(stats["backend"], "embedded", "{stats}");

    // The old prompts are found by text, exactly, first.
    let corpus = sample_tsv(40);
    let prompt = corpus.lines().nth(7).unwrap().split('\t').next().unwrap();
    let hits = run_json(
        &["search", prompt, "--index", &index, "-k", "3", "--json"],
        tmp.path(),
    );
    assert_eq!(hits[0]["prompt"].as_str(), Some(prompt), "{hits}");

    // The old images are found by image.
    let image = root().join("examples/images/astronaut_riding_a_dragon.png");
    let hash = blake3::hash(&std::fs::read(&image).unwrap())
        .to_hex()
        .to_string();
    let found = run_json(
        &[
            "search",
            "--image",
            image.to_str().unwrap(),
            "--index",
            &index,
            "-k",
            "1",
            "--json",
        ],
        tmp.path(),
    );
    assert_eq!(
        found["images"][0]["metadata"]["content_hash"], hash,
        "{found}"
    );

    // Today's writer adds to it: 40 old prompts are duplicates, the rest new.
    let more = tmp.path().join("more.tsv");
    std::fs::write(&more, sample_tsv(60)).unwrap();
    let imported = run_json(
        &[
            "import",
            more.to_str().unwrap(),
            "--index",
            &index,
            "--json",
        ],
        tmp.path(),
    );
    assert!(imported["duplicates"].as_u64().unwrap() >= 40, "{imported}");
    let after = run_json(&["stats", "--index", &index, "--json"], tmp.path());
    assert_eq!(
        after["records"].as_u64().unwrap(),
        43 + imported["added"].as_u64().unwrap(),
        "{after}"
    );
}
