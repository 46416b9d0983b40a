//! all-MiniLM-L6-v2 against the Kaggle competition's own vectors, with the real weights.

use crate::common;

use std::collections::HashMap;

use promptdex::models::TextEmbedder;

/// Reads `sample_submission.csv` (`imgId_eId,val`) into imgId -> 384-d vector.
fn reference_vectors() -> HashMap<String, Vec<f32>> {
    let path = common::data_dir().join("eval/kaggle_sample/sample_submission.csv");
    let mut reader = csv::Reader::from_path(&path).expect("sample_submission.csv");
    let mut vectors: HashMap<String, Vec<(usize, f32)>> = HashMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let (img, e) = row[0].rsplit_once('_').unwrap();
        vectors
            .entry(img.to_string())
            .or_default()
            .push((e.parse().unwrap(), row[1].parse().unwrap()));
    }
    vectors
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(e, _)| *e);
            (k, v.into_iter().map(|(_, x)| x).collect())
        })
        .collect()
}

#[test]
fn reproduces_the_kaggle_reference_vectors() {
    let reference = reference_vectors();
    let path = common::data_dir().join("eval/kaggle_sample/prompts.csv");
    let mut reader = csv::Reader::from_path(&path).expect("prompts.csv");
    let mut ids = Vec::new();
    let mut prompts = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        let stem = std::path::Path::new(&row[0])
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        ids.push(stem);
        prompts.push(row[1].to_string());
    }
    assert_eq!(ids.len(), 7);
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let vectors = common::minilm().embed(&refs).unwrap();
    let mut worst = 0f32;
    for (id, v) in ids.iter().zip(&vectors) {
        let expected = &reference[id];
        assert_eq!(expected.len(), 384);
        assert_eq!(v.len(), 384);
        for (a, b) in v.iter().zip(expected) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("max abs difference to the Kaggle vectors: {worst:e}");
    assert!(worst <= 1e-5, "max abs difference {worst} > 1e-5");
}

#[test]
fn batching_does_not_change_vectors() {
    let model = common::minilm();
    let texts = [
        "a cute cat",
        "an astronaut riding a horse on mars, highly detailed, octane render, 8k, trending on artstation",
        "portrait of a woman, oil painting by rembrandt",
        "",
    ];
    let together = model.embed(&texts).unwrap();
    for (text, v) in texts.iter().zip(&together) {
        let alone = &model.embed(&[text]).unwrap()[0];
        let diff = v
            .iter()
            .zip(alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{text:?}: batched and alone differ by {diff}");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?} has norm {norm}");
    }
}

#[test]
fn long_texts_are_truncated_at_256_word_pieces() {
    let model = common::minilm();
    let base = "castle ".repeat(300);
    let longer = format!("{base} and a dragon flying over it");
    let v = model.embed(&[base.as_str(), longer.as_str()]).unwrap();
    let diff = v[0]
        .iter()
        .zip(&v[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-6,
        "text past 256 word pieces changed the vector by {diff}"
    );
    let short = model.embed(&["castle castle castle"]).unwrap();
    let diff = v[0]
        .iter()
        .zip(&short[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff > 1e-4,
        "a short text should differ from the truncated long one"
    );
}
