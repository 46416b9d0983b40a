//! Cross-modal search with CLIP: prompts found for an image in the image model's space.
//!
//! The encoder is the tiny random CLIP with the real vocabulary and the real CLIP tokenizer
//! (`common::tiny_clip_dir`, loaded with `--model-dir`), so rankings are meaningless as
//! retrieval but exact as computation: every result is checked against a brute-force ranking
//! computed here from the encoder's own vectors.

use crate::common;

use std::collections::HashSet;
use std::path::Path;

use common::{data_dir, promptdex, sample_tsv, stderr, stdout, tiny_clip_dir};
use promptdex::ingest::{load_image, DecodeLimits};
use promptdex::models::load::load_image_encoder_from;
use promptdex::store::{dot, Catalog};

const MODEL: &str = "clip-vit-b-32";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_json(args: &[&str], cwd: &Path) -> serde_json::Value {
    let out = promptdex(args, cwd);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    let text = stdout(&out);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        serde_json::from_str(text.lines().last().unwrap()).expect("JSON output")
    })
}

/// A few real SD images, four of them with an embedded prompt.
fn image_folder(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for (set, names) in [
        (
            "sdcpp_lovely_cat",
            &[
                "f32.png",
                "q4_0.png",
                "cat_with_sd_cpp_42.png",
                "with_lcm.png",
            ][..],
        ),
        (
            "diffusiondb_samples",
            &[
                "0149b02d-2714-4bbd-af23-22d9b85f928e.png",
                "0244dd6a-c4a3-4cfb-be11-c5510daeaf9c.png",
            ][..],
        ),
        ("kaggle_sample", &["227ef0887.png"][..]),
    ] {
        for name in names {
            let from = data_dir().join("eval").join(set).join("images").join(name);
            std::fs::copy(from, dest.join(name)).unwrap();
        }
    }
}

fn index_args<'a>(folder: &'a Path, index: &'a Path, clip: &'a Path) -> Vec<&'a str> {
    vec![
        "index",
        path(folder),
        "--index",
        path(index),
        "--model",
        MODEL,
        "--model-dir",
        path(clip),
        "--json",
    ]
}

fn search_image(
    image: &Path,
    index: &Path,
    clip: &Path,
    k: usize,
    cwd: &Path,
) -> serde_json::Value {
    let k = k.to_string();
    run_json(
        &[
            "search",
            "--image",
            path(image),
            "--index",
            path(index),
            "--model-dir",
            path(clip),
            "-k",
            &k,
            "--json",
        ],
        cwd,
    )
}

/// Every live prompt in the catalog with its record id (the test process opens the catalog
/// only while no promptdex process runs).
fn catalog_prompts(index: &Path) -> Vec<(u64, String)> {
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let n = catalog.next_id().unwrap();
    catalog
        .range(0, n)
        .map(|r| r.unwrap())
        .filter_map(|(id, record)| record.prompt().map(|p| (id, p.to_string())))
        .collect()
}

/// The exact answer: every prompt embedded here by the encoder's text side, ranked by dot
/// product with the query image's vector, each text once.
fn brute_force(index: &Path, clip: &Path, image: &Path, k: usize) -> Vec<(String, f32)> {
    let loaded = load_image_encoder_from(clip, MODEL).unwrap();
    let text = loaded.encoder.text_embedder().unwrap();
    let picture = load_image(image, &DecodeLimits::default()).unwrap();
    let query = loaded.encoder.encode(&[picture]).unwrap().remove(0).vector;
    let prompts = catalog_prompts(index);
    let texts: Vec<&str> = prompts.iter().map(|(_, p)| p.as_str()).collect();
    let vectors = text.embed(&texts).unwrap();

    // The aligned vectors the index stored are the encoder's own.
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let stored: std::collections::HashMap<u64, Vec<f32>> = catalog
        .aligned_vectors(0, catalog.next_id().unwrap())
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(stored.len(), prompts.len(), "one aligned vector per prompt");
    for ((id, p), v) in prompts.iter().zip(&vectors) {
        let s = &stored[id];
        let d = s
            .iter()
            .zip(v)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "stored aligned vector of {p:?} differs by {d}");
    }

    let mut scored: Vec<(String, f32)> = prompts
        .iter()
        .zip(&vectors)
        .map(|((_, p), v)| (p.clone(), dot(&query, v)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut seen = HashSet::new();
    scored.retain(|(p, _)| seen.insert(p.clone()));
    scored.truncate(k);
    scored
}

/// `found` (the search's prompts) equals the brute-force ranking, up to the order of texts
/// whose similarities tie within rounding.
fn assert_same_ranking(found: &[serde_json::Value], exact: &[(String, f32)]) {
    assert_eq!(found.len(), exact.len());
    for (i, (hit, (prompt, sim))) in found.iter().zip(exact).enumerate() {
        let got = hit["similarity"].as_f64().unwrap() as f32;
        assert!(
            (got - sim).abs() < 1e-5,
            "rank {i}: similarity {got} vs exact {sim}"
        );
        let tie = |j: usize| exact.get(j).is_some_and(|(_, s)| (s - sim).abs() < 1e-5);
        if !(i > 0 && tie(i - 1) || tie(i + 1)) {
            assert_eq!(hit["prompt"].as_str().unwrap(), prompt, "rank {i}");
        }
    }
}

#[test]
fn clip_index_finds_prompts_for_an_image_exactly() {
    let clip = tiny_clip_dir();
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("images");
    image_folder(&folder);
    let index = tmp.path().join("index");
    let corpus = tmp.path().join("corpus.tsv");
    std::fs::write(&corpus, sample_tsv(150)).unwrap();

    // Corpus first (MiniLM only), then the images with CLIP, which aligns every prompt.
    let imported = run_json(
        &["import", path(&corpus), "--index", path(&index), "--json"],
        tmp.path(),
    );
    assert_eq!(imported["awaiting_alignment"], 0, "no image model yet");
    let report = run_json(&index_args(&folder, &index, &clip), tmp.path());
    assert_eq!(report["added"], 7);
    let with_prompt = report["with_prompt"].as_u64().unwrap();
    assert!(with_prompt >= 3, "{report}");
    let prompts = catalog_prompts(&index);
    assert_eq!(
        report["prompts_aligned"].as_u64().unwrap() as usize,
        prompts.len()
    );
    assert!(
        prompts.len() as u64 >= 150 + with_prompt - 5,
        "{}",
        prompts.len()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["image_model"]["name"], MODEL);
    assert_eq!(manifest["image_model"]["text_aligned"], true);

    for (query, k) in [("f32.png", 10), ("227ef0887.png", 25)] {
        let image = folder.join(query);
        let found = search_image(&image, &index, &clip, k, tmp.path());
        assert!(found["note"].is_null(), "{found}");
        let images = found["images"].as_array().unwrap();
        assert!(images[0]["path"].as_str().unwrap().ends_with(query));
        let hits = found["prompts"].as_array().unwrap();
        assert_same_ranking(hits, &brute_force(&index, &clip, &image, k));
        // Cross-modal hits are prompts, from the corpus and from images alike.
        assert!(hits
            .iter()
            .all(|h| !h["prompt"].as_str().unwrap().is_empty()));
    }

    // The human table shows both lists, separately.
    let out = promptdex(
        &[
            "search",
            "--image",
            path(&folder.join("f32.png")),
            "--index",
            path(&index),
            "--model-dir",
            path(&clip),
            "-k",
            "3",
        ],
        tmp.path(),
    );
    let table = stdout(&out);
    assert!(
        table.contains("nearest images:") && table.contains("nearest prompts (cross-modal):"),
        "{table}"
    );

    // Another corpus imported later waits for the next `index`, and search says so.
    let more = tmp.path().join("more.tsv");
    let all = sample_tsv(190);
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let extra: String = std::iter::once(header)
        .chain(lines.skip(150))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&more, extra).unwrap();
    let imported = run_json(
        &["import", path(&more), "--index", path(&index), "--json"],
        tmp.path(),
    );
    let waiting = imported["awaiting_alignment"].as_u64().unwrap();
    assert!(waiting >= 30, "{imported}");
    let image = folder.join("f32.png");
    let found = search_image(&image, &index, &clip, 5, tmp.path());
    assert!(
        found["note"]
            .as_str()
            .unwrap()
            .contains("next `promptdex index`"),
        "{found}"
    );
    let again = run_json(&index_args(&folder, &index, &clip), tmp.path());
    assert_eq!(again["unchanged"], 7);
    assert_eq!(again["prompts_aligned"].as_u64().unwrap(), waiting);
    let found = search_image(&image, &index, &clip, 40, tmp.path());
    assert!(found["note"].is_null(), "{found}");
    assert_same_ranking(
        found["prompts"].as_array().unwrap(),
        &brute_force(&index, &clip, &image, 40),
    );

    // The encoder must be the one the index was built with.
    let other = tmp.path().join("other-clip");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(clip.join(f), other.join(f)).unwrap();
    }
    let mut weights = std::fs::read(clip.join("model.safetensors")).unwrap();
    let n = weights.len();
    weights[n - 1] ^= 1;
    std::fs::write(other.join("model.safetensors"), weights).unwrap();
    let out = promptdex(
        &[
            "search",
            "--image",
            path(&image),
            "--index",
            path(&index),
            "--model-dir",
            path(&other),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("was built with"), "{}", stderr(&out));
}

#[test]
fn a_killed_clip_index_run_resumes_its_alignment() {
    let clip = tiny_clip_dir();
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("images");
    image_folder(&folder);
    let index = tmp.path().join("index");
    let corpus = tmp.path().join("corpus.tsv");
    std::fs::write(&corpus, sample_tsv(2000)).unwrap();
    run_json(
        &["import", path(&corpus), "--index", path(&index), "--json"],
        tmp.path(),
    );

    let args = index_args(&folder, &index, &clip);
    let kills = common::kill_until_done(&args, 700, 250);
    println!("index run killed {kills} times before it finished");
    let prompts = catalog_prompts(&index);
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    assert_eq!(catalog.aligned_upto().unwrap(), catalog.next_id().unwrap());
    let aligned = catalog
        .aligned_vectors(0, catalog.next_id().unwrap())
        .count();
    assert_eq!(aligned, prompts.len(), "every prompt aligned once");
    drop(catalog);
    let image = folder.join("q4_0.png");
    let found = search_image(&image, &index, &clip, 10, tmp.path());
    assert!(found["note"].is_null(), "{found}");
    assert_same_ranking(
        found["prompts"].as_array().unwrap(),
        &brute_force(&index, &clip, &image, 10),
    );
}
