//! BLIP captioning against `transformers`, without the real weights: tiny random
//! `BlipForConditionalGeneration` checkpoints shaped like blip-image-captioning-base and -large,
//! with their PyTorch outputs (image embeddings, logits, `generate` token ids for greedy and
//! beam search), made by `scripts/make_blip_fixtures.py` into `tests/fixtures/blip/`; plus BLIP
//! preprocessing against `transformers`' image processor on a real picture.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use promptdex::models::caption::blip::{self, Blip, BlipConfig, Decoding};
use promptdex::models::caption::Captioner;
use serde::Deserialize;

/// One `generate` setting and its per-image results.
#[derive(Deserialize)]
struct Case {
    decoding: String,
    beams: usize,
    max_new_tokens: usize,
    min_new_tokens: usize,
    ids: Vec<Vec<u32>>,
    texts: Vec<String>,
    scores: Vec<f32>,
    sequence_logits: Vec<Vec<Vec<f32>>>,
}

/// What `scripts/make_blip_fixtures.py` records for one checkpoint.
#[derive(Deserialize)]
struct Reference {
    pixel_values: Vec<Vec<Vec<Vec<f32>>>>,
    image_embeds: Vec<Vec<Vec<f32>>>,
    first_logits: Vec<Vec<f32>>,
    bos_token_id: u32,
    cases: Vec<Case>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/blip").join(name)
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

fn pixels(r: &Reference) -> Tensor {
    let n = r.pixel_values.len();
    let size = r.pixel_values[0][0].len();
    let flat: Vec<f32> = r
        .pixel_values
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .collect();
    Tensor::from_vec(flat, (n, 3, size, size), &Device::Cpu).unwrap()
}

fn options(case: &Case) -> BlipConfig {
    BlipConfig {
        decoding: match case.decoding.as_str() {
            "greedy" => Decoding::Greedy,
            _ => Decoding::Beam { width: case.beams },
        },
        max_tokens: case.max_new_tokens,
        min_tokens: case.min_new_tokens,
    }
}

/// Loads a fixture through [`Blip::load`] and compares the vision output, the logits and every
/// `generate` case (both images decoded as one batch).
fn check(name: &str) {
    let r = reference(name);
    let mut model = Blip::load(&fixture(name)).unwrap();
    assert_eq!(model.name(), name);
    assert_eq!(*model.options(), BlipConfig::default());

    let embeds = model.encode_images(&pixels(&r)).unwrap();
    let ours: Vec<f32> = embeds.flatten_all().unwrap().to_vec1().unwrap();
    let theirs: Vec<f32> = r.image_embeds.iter().flatten().flatten().copied().collect();
    assert_eq!(
        embeds.dims(),
        &[2, r.image_embeds[0].len(), r.image_embeds[0][0].len()]
    );
    let dv = max_diff(&ours, &theirs);

    let bos = vec![vec![r.bos_token_id]; 2];
    let first = model.logits(&embeds, &bos).unwrap();
    let first: Vec<f32> = first.flatten_all().unwrap().to_vec1().unwrap();
    let dl = max_diff(&first, &r.first_logits.concat());
    println!("{name}: max |diff| image embeddings {dv:.2e}, first logits {dl:.2e}");
    assert!(dv < 1e-4, "{name}: image embeddings differ by {dv}");
    assert!(dl < 1e-4, "{name}: first-step logits differ by {dl}");

    for case in &r.cases {
        let what = format!(
            "{name} {} x{} min {}",
            case.decoding, case.beams, case.min_new_tokens
        );
        // Teacher-forced logits over the whole greedy sequence (the cache-free path).
        for (i, seq_logits) in case.sequence_logits.iter().enumerate() {
            let one = embeds.narrow(0, i, 1).unwrap();
            let ours = model.logits(&one, &[case.ids[i].clone()]).unwrap();
            let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
            let d = max_diff(&ours, &seq_logits.concat());
            assert!(
                d < 1e-4,
                "{what}: sequence logits of image {i} differ by {d}"
            );
        }
        model.set_options(options(case)).unwrap();
        let generated = model.generate(&embeds).unwrap();
        let captions = model.caption_pixels(&pixels(&r)).unwrap();
        for i in 0..2 {
            assert_eq!(
                generated[i].ids, case.ids[i],
                "{what}: token ids of image {i}"
            );
            assert_eq!(captions[i].text, case.texts[i], "{what}: text of image {i}");
            let ds = (generated[i].score - case.scores[i]).abs();
            assert!(ds < 1e-4, "{what}: score of image {i} differs by {ds}");
            assert_eq!(captions[i].score, generated[i].score);
        }
        println!(
            "{what}: ids match, lengths {:?}",
            case.ids.iter().map(|s| s.len() - 1).collect::<Vec<_>>()
        );
    }
}

#[test]
fn base_matches_transformers() {
    check("base");
}

#[test]
fn large_matches_transformers() {
    check("large");
}

/// The fixtures do exercise what they claim: captions that end early and ones cut at the limit,
/// a minimum length that changes the result, and beam search that differs from greedy.
#[test]
fn fixtures_cover_early_ends_minimum_lengths_and_beams() {
    let r = reference("large");
    let find = |d: &str, min: usize| {
        r.cases
            .iter()
            .find(|c| c.decoding == d && c.min_new_tokens == min)
            .unwrap()
    };
    let greedy = find("greedy", 0);
    assert!(greedy
        .ids
        .iter()
        .any(|s| s.len() - 1 < greedy.max_new_tokens));
    assert_ne!(greedy.ids, find("greedy", 8).ids);
    assert_ne!(greedy.ids, find("beam", 0).ids);
    assert_ne!(find("beam", 0).ids, find("beam", 5).ids);
}

#[test]
fn captioner_preprocesses_batches_and_names_the_model() {
    let model = Blip::load(&fixture("large")).unwrap();
    let a = image::RgbImage::from_fn(90, 60, |x, y| image::Rgb([x as u8, y as u8, 200]));
    let b = image::RgbImage::from_fn(30, 50, |x, y| image::Rgb([(x * y) as u8, 9, 99]));
    let both = model.caption(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(both.len(), 2);
    assert!(model.caption(&[]).unwrap().is_empty());
    // Alone, an image gets the caption it gets in a batch.
    assert_eq!(model.caption(&[b]).unwrap()[0].text, both[1].text);
    let alone = model.caption(std::slice::from_ref(&a)).unwrap();
    assert_eq!(alone[0].text, both[0].text);
    assert!((alone[0].score - both[0].score).abs() < 1e-4);
    assert!(both.iter().all(|c| c.score <= 0.0 && c.score.is_finite()));
    let direct = model
        .caption_pixels(&blip::preprocess(&[a], model.image_size()).unwrap())
        .unwrap();
    assert_eq!(direct[0].text, both[0].text);
    let boxed: Box<dyn Captioner> = Box::new(model);
    assert_eq!(boxed.name(), "large");
}

#[test]
fn bad_options_and_inputs_are_errors() {
    let mut model = Blip::load(&fixture("base")).unwrap();
    let too_long = BlipConfig {
        max_tokens: 40,
        ..BlipConfig::default()
    };
    assert!(model.set_options(too_long).is_err());
    let no_beams = BlipConfig {
        decoding: Decoding::Beam { width: 0 },
        ..BlipConfig::default()
    };
    assert!(model.set_options(no_beams).is_err());
    let wrong = Tensor::zeros((1, 3, 48, 48), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(model.encode_images(&wrong).is_err());
    assert!(model.generate(&wrong).is_err());
    let embeds = model.encode_images(&pixels(&reference("base"))).unwrap();
    assert!(model.logits(&embeds, &[vec![1]]).is_err());
    assert!(model.logits(&embeds, &[vec![1], vec![1000]]).is_err());
    assert!(model.logits(&embeds, &[vec![1], vec![1, 2]]).is_err());
}

#[test]
fn corrupt_or_mismatched_checkpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("broken") && err.contains("config.json"),
        "{err}"
    );
    std::fs::write(dir.join("config.json"), "{\"text_config\": 3}").unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");

    let base = fixture("base");
    std::fs::copy(base.join("config.json"), dir.join("config.json")).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::copy(base.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    // The large checkpoint's tensors under the base config: a shape mismatch, named.
    std::fs::copy(
        fixture("large/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("shape"),
        "{err}"
    );

    // A missing tensor is named.
    let mut tensors =
        candle_core::safetensors::load(base.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.remove("vision_model.post_layernorm.weight");
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("vision_model.post_layernorm.weight"), "{err}");

    // Config values the model cannot run with.
    std::fs::copy(
        base.join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(base.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["text_config"]["hidden_act"] = "swish".into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("swish"),
        "{err}"
    );
    json["text_config"]["hidden_act"] = "gelu".into();
    json["text_config"]["sep_token_id"] = 5000.into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("sep_token_id"), "{err}");
    json["text_config"]["sep_token_id"] = 3.into();
    json["vision_config"]["num_attention_heads"] = 5.into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let err = Blip::load(&dir).unwrap_err().to_string();
    assert!(err.contains("heads"), "{err}");
    json["vision_config"]["num_attention_heads"] = 4.into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    Blip::load(&dir).unwrap();
}

/// Guards the fixtures: with the tanh GELU instead of the exact one, the parity is lost.
#[test]
fn fixtures_tell_exact_gelu_from_tanh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("large");
    std::fs::create_dir(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("large").join(f), dir.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(fixture("large/config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["vision_config"]["hidden_act"] = "gelu_pytorch_tanh".into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let r = reference("large");
    let model = Blip::load(&dir).unwrap();
    let embeds = model.encode_images(&pixels(&r)).unwrap();
    let ours: Vec<f32> = embeds.flatten_all().unwrap().to_vec1().unwrap();
    let theirs: Vec<f32> = r.image_embeds.iter().flatten().flatten().copied().collect();
    let d = max_diff(&ours, &theirs);
    println!("large with tanh GELU: max |diff| {d:.2e}");
    // Three times the parity tolerance.
    assert!(d > 3e-4);
}

#[test]
fn preprocessing_matches_transformers_blip_image_processor() {
    let image = promptdex::ingest::load_image(
        &root().join("examples/images/astronaut_riding_a_dragon.png"),
        &promptdex::ingest::DecodeLimits::default(),
    )
    .unwrap();
    let crop = image::imageops::crop_imm(&image, 0, 0, 512, 320).to_image();
    let expected = promptdex::ingest::load_image(
        &fixture("preprocess/photo_384.png"),
        &promptdex::ingest::DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(expected.dimensions(), (384, 384));
    let ours = blip::preprocess(&[crop], 384).unwrap();
    assert_eq!(ours.dims(), [1, 3, 384, 384]);
    let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    let mean = [0.481_454_66f32, 0.457_827_5, 0.408_210_73];
    let std = [0.268_629_54f32, 0.261_302_6, 0.275_777_1];
    let plane = 384 * 384;
    // Back to 0-255 levels: |ours - theirs| * std * 255.
    let mut diffs = Vec::with_capacity(3 * plane);
    for (i, px) in expected.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            let theirs = (px[c] as f32 / 255.0 - mean[c]) / std[c];
            diffs.push((ours[c * plane + i] - theirs).abs() * std[c] * 255.0);
        }
    }
    let max = diffs.iter().copied().fold(0.0, f32::max);
    let avg = diffs.iter().sum::<f32>() / diffs.len() as f32;
    // Both resize in two passes with 8-bit rounding between them, but Pillow's passes run in
    // fixed point and the image crate's in f32, so single levels differ in rare places
    // (measured: max 1 level, mean 0.001). Without the 8-bit step between the passes, edges
    // differ by up to 9 levels.
    println!("BLIP preprocessing vs transformers: max {max:.2} levels, mean {avg:.4}");
    assert!(max <= 1.01, "max difference {max} levels");
    assert!(avg < 0.02, "mean difference {avg} levels");
}
