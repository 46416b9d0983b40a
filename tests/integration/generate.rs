//! `generate` and `eval` end to end on real models, real images and a small real index: the
//! stored prompt wins, leave-one-out keeps an image's own prompt out, the Kaggle submission has
//! the competition's shape, indexes without images or without a corpus still generate, and the
//! ImageNet tagger names real photos.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{data_dir, promptdex, root, sample_tsv, stderr, stdout};
use promptdex::models::caption::ImageNetTagger;
use promptdex::models::image::{EfficientNetLite, ImageEncoder, ImageNetClasses};
use promptdex::models::load::ensure_model;
use promptdex::models::registry::{EFFICIENTNET_LITE0, IMAGENET_CLASSES};
use promptdex::models::TextEmbedder;
use promptdex::store::dot;
use serde_json::Value;

/// A folder under target/ that lives for the whole test binary.
fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/tmp/generate-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_ok(args: &[&str], cwd: &Path) -> String {
    let out = promptdex(args, cwd);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Indexes the shared eval set `set` with its true prompts into `index` (under `cwd`).
fn index_eval_set(set: &str, index: &str, cwd: &Path, extra: &[&str]) {
    let folder = data_dir().join("eval").join(set);
    let csv = folder.join("prompts.csv");
    let mut args = vec![
        "index",
        folder.to_str().unwrap(),
        "--prompts",
        csv.to_str().unwrap(),
        "--index",
        index,
    ];
    args.extend(extra);
    run_ok(&args, cwd);
}

/// 300 corpus prompts + the Kaggle sample and the stable-diffusion.cpp images with their
/// prompts: built once per test binary.
fn full_index() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("full");
        std::fs::write(dir.join("corpus.tsv"), sample_tsv(300)).unwrap();
        run_ok(&["import", "corpus.tsv", "--index", "idx"], &dir);
        for set in ["kaggle_sample", "sdcpp_lovely_cat"] {
            index_eval_set(set, "idx", &dir, &[]);
        }
        dir.join("idx")
    })
}

fn generate_json(index: &Path, image: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "generate",
        image.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--json",
    ];
    args.extend(extra);
    let text = run_ok(&args, index.parent().unwrap());
    let list: Value = serde_json::from_str(&text).unwrap();
    list[0]["result"].clone()
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn stored_prompt_wins_unless_ignored() {
    let index = full_index();
    // This file carries stable-diffusion.cpp's `parameters` chunk; prompts.csv has the truth.
    let image = data_dir().join("eval/sdcpp_lovely_cat/images/without_lcm.png");
    let found = generate_json(index, &image, &[]);
    assert_eq!(found["source"], "embedded");
    assert_eq!(found["prompt"], "a lovely cat");
    // The file's own A1111 text comes back as `embedded.infotext`, ready to paste into A1111.
    assert_eq!(
        found["embedded"]["infotext"],
        "a lovely cat\nSteps: 4, CFG scale: 7.000000, Seed: 42, Size: 512x512, \
         Model: v1-5-pruned-emaonly-ggml-model-f16.bin, RNG: cuda, Sampler: euler_a, \
         Version: stable-diffusion.cpp"
    );
    let truth = common::minilm().embed(&["a lovely cat"]).unwrap().remove(0);
    assert!((dot(&vector(&found["vector"]), &truth) - 1.0).abs() < 1e-5);
    assert_eq!(found["cosine_to_ensemble"], 1.0);

    let ignored = generate_json(index, &image, &["--ignore-metadata"]);
    assert_eq!(ignored["source"], "ensemble");
    let kinds: Vec<&str> = ignored["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    for kind in ["tags", "neighbour", "corpus", "prior"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let weights: f64 = ignored["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["weight"].as_f64().unwrap())
        .sum();
    assert!((weights - 1.0).abs() < 1e-4, "weights sum to {weights}");
    // The reported cosine is the one between the text's vector and the ensemble.
    let cosine = dot(&vector(&ignored["vector"]), &vector(&ignored["ensemble"]));
    assert!((cosine - ignored["cosine_to_ensemble"].as_f64().unwrap() as f32).abs() < 1e-4);
}

#[test]
fn eval_leave_one_out_and_kaggle_submission() {
    let index = full_index();
    let dir = index.parent().unwrap();
    let csv = data_dir().join("eval/kaggle_sample/prompts.csv");
    let text = run_ok(
        &[
            "eval",
            csv.to_str().unwrap(),
            "--index",
            "idx",
            "--leave-one-out",
            "--json",
            "--submission",
            "submission.csv",
        ],
        dir,
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["evaluated"], 7);
    let methods: Vec<&str> = report["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "constant",
            "caption",
            "nearest_image",
            "nearest_corpus",
            "modifiers",
            "ensemble",
            "generated",
            "oracle"
        ]
    );
    for image in report["per_image"].as_array().unwrap() {
        // Leave-one-out: the image itself (indexed with its true prompt) is never its own
        // neighbour, so nothing scores a perfect 1.
        let nearest = image["scores"]["nearest_image"].as_f64().unwrap();
        assert!(nearest < 0.999, "{image}");
        assert!(image["scores"]["oracle"].as_f64().unwrap() < 0.999);
    }
    let mean = |name: &str| {
        report["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == name)
            .unwrap()["summary"]["mean"]
            .as_f64()
            .unwrap()
    };
    assert!(mean("oracle") >= mean("nearest_corpus"));

    // The Kaggle format: a header, 7 x 384 rows keyed imgId_eId in order, values = ensemble.
    let submission = std::fs::read_to_string(dir.join("submission.csv")).unwrap();
    let lines: Vec<&str> = submission.lines().collect();
    assert_eq!(lines[0], "imgId_eId,val");
    assert_eq!(lines.len(), 1 + 7 * 384);
    let labels = promptdex::ingest::read_labels(&csv).unwrap();
    for (i, label) in labels.iter().enumerate() {
        let stem = label.image.file_stem().unwrap().to_str().unwrap();
        let expected = vector(&report["per_image"][i]["ensemble_vector"]);
        for e in 0..384 {
            let (key, val) = lines[1 + i * 384 + e].split_once(',').unwrap();
            assert_eq!(key, format!("{stem}_{e}"));
            assert!((val.parse::<f32>().unwrap() - expected[e]).abs() < 1e-6);
        }
    }
}

#[test]
fn an_index_without_images_or_without_a_corpus_still_generates() {
    let image = data_dir().join("eval/kaggle_sample/images/227ef0887.png");
    let dir = scratch("partial");
    std::fs::write(dir.join("corpus.tsv"), sample_tsv(200)).unwrap();
    run_ok(&["import", "corpus.tsv", "--index", "prompts-only"], &dir);
    let found = generate_json(&dir.join("prompts-only"), &image, &[]);
    assert_eq!(found["source"], "ensemble");
    assert!(!found["prompt"].as_str().unwrap().is_empty());
    let missing = found["missing"].to_string();
    assert!(missing.contains("no images"), "{missing}");

    index_eval_set("kaggle_sample", "images-only", &dir, &[]);
    let found = generate_json(&dir.join("images-only"), &image, &[]);
    assert!(!found["prompt"].as_str().unwrap().is_empty());
    // The only prompts are the images' own: the nearest is this image's (no leave-one-out).
    assert!(
        found["prompt"].as_str().unwrap().contains("ramen"),
        "{found}"
    );

    // The text output says what is missing too.
    let out = run_ok(
        &[
            "generate",
            image.to_str().unwrap(),
            "--index",
            "prompts-only",
        ],
        &dir,
    );
    assert!(
        out.contains("prompt: ") && out.contains("note: the index holds no images"),
        "{out}"
    );
}

#[test]
fn class_vectors_are_embedded_once_per_index() {
    let index = full_index();
    let cache = index.join("cache");
    let listing = |dir: &Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    (e.path(), e.metadata().unwrap().modified().unwrap())
                })
                .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    };
    let image = data_dir().join("eval/kaggle_sample/images/227ef0887.png");
    generate_json(index, &image, &[]);
    let first = listing(&cache);
    assert!(
        first
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("imagenet-classes")),
        "{first:?}"
    );
    generate_json(index, &image, &[]);
    assert_eq!(listing(&cache), first, "the cache was rewritten");
}

#[test]
fn bad_images_are_reported_and_the_others_still_generate() {
    let index = full_index();
    let dir = scratch("bad");
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let good = data_dir().join("eval/kaggle_sample/images/227ef0887.png");
    let out = promptdex(
        &[
            "generate",
            dir.join("broken.png").to_str().unwrap(),
            good.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.png"), "{}", stderr(&out));
    assert!(stdout(&out).contains("227ef0887.png"));
    let none = promptdex(
        &[
            "generate",
            "missing.png",
            "--index",
            index.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(!none.status.success());
    assert!(stderr(&none).contains("missing.png"), "{}", stderr(&none));
}

#[test]
fn tagger_names_real_photos() {
    let root_models = common::models_dir();
    let classes = ImageNetClasses::load_dir(
        &ensure_model(&root_models, &IMAGENET_CLASSES, &mut |_| {}).unwrap(),
    )
    .unwrap();
    let weights = ensure_model(&root_models, &EFFICIENTNET_LITE0, &mut |_| {})
        .unwrap()
        .join("model.safetensors");
    let encoder = EfficientNetLite::load(&weights).unwrap();
    let tagger = ImageNetTagger::new(classes);
    let photos = common::photos_dir();
    let load = |name: &str| image::open(photos.join(name)).unwrap().to_rgb8();
    let out = encoder
        .encode(&[load("eagle.jpg"), load("dog.jpg")])
        .unwrap();
    let eagle = tagger.tag(out[0].logits.as_ref().unwrap(), 5);
    let dog = tagger.tag(out[1].logits.as_ref().unwrap(), 5);
    eprintln!("eagle.jpg: {}; dog.jpg: {}", eagle.phrase, dog.phrase);
    assert!(eagle.phrase.contains("eagle"), "{}", eagle.phrase);
    // ImageNet's dog breeds are classes 151..=268; the best one is named in the phrase.
    let breed = dog
        .top
        .iter()
        .find(|t| (151..=268).contains(&t.class))
        .expect("a dog breed");
    assert!(
        dog.phrase.contains(&breed.name),
        "{} / {:?}",
        dog.phrase,
        dog.top
    );
    assert!(eagle
        .top
        .windows(2)
        .all(|w| w[0].probability >= w[1].probability));
}

#[test]
fn text_aligned_encoder_and_captioner_feed_the_ensemble() {
    let dir = scratch("aligned");
    let clip = common::tiny_clip_dir();
    let blip = root().join("tests/fixtures/blip/base");
    std::fs::write(dir.join("corpus.tsv"), sample_tsv(150)).unwrap();
    run_ok(&["import", "corpus.tsv", "--index", "idx"], &dir);
    index_eval_set(
        "kaggle_sample",
        "idx",
        &dir,
        &[
            "--model",
            "clip-vit-b-32",
            "--model-dir",
            clip.to_str().unwrap(),
        ],
    );
    let folder = data_dir().join("eval/kaggle_sample");
    let image = folder.join("images/227ef0887.png");
    let started = std::time::Instant::now();
    let found = generate_json(
        &dir.join("idx"),
        &image,
        &[
            "--model-dir",
            clip.to_str().unwrap(),
            "--captioner-dir",
            blip.to_str().unwrap(),
            "--mode",
            "classic",
        ],
    );
    let first = started.elapsed();
    let kinds: Vec<&str> = found["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    for kind in ["caption", "cross_modal", "neighbour", "corpus", "prior"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // CLIP has no ImageNet head: no tags.
    assert!(!kinds.contains(&"tags"));
    assert_eq!(found["captions"].as_array().unwrap().len(), 1);
    // Classic mode: at most one medium, artist, movement and trending phrase, ranked by CLIP.
    let modifiers = found["modifiers"].as_array().unwrap();
    assert_eq!(modifiers.len(), 6, "{modifiers:?}");
    for category in ["medium", "artist", "movement", "trending"] {
        let n = modifiers
            .iter()
            .filter(|m| m["category"] == category)
            .count();
        assert!(n <= 1, "{category}: {modifiers:?}");
    }
    // The vocabulary was embedded with CLIP's text tower once, and cached in the index.
    let cached: Vec<String> = std::fs::read_dir(dir.join("idx/cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached
            .iter()
            .any(|n| n.starts_with("vocabulary-clip-vit-b-32")),
        "{cached:?}"
    );
    let started = std::time::Instant::now();
    let again = generate_json(
        &dir.join("idx"),
        &image,
        &["--model-dir", clip.to_str().unwrap(), "--mode", "classic"],
    );
    let second = started.elapsed();
    assert_eq!(again["modifiers"], found["modifiers"]);
    eprintln!("first run {first:?}, second run {second:?}");
    assert!(second < first, "the second run re-embedded the vocabulary");
}
