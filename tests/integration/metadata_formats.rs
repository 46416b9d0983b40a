//! Front-ends whose metadata promptdex learnt to read for issue 16 (SwarmUI, Fooocus in JPEG
//! and WebP, Krita AI Diffusion's iTXt, NovelAI's stealth pixels), one fixture each written by
//! `scripts/make_metadata_fixtures.py` from the layout the front-end's source defines; each
//! test checks prompt, negative prompt and the main settings exactly. The stealth fixtures
//! are also indexed end to end.

use std::path::{Path, PathBuf};

use promptdex::ingest::metadata::{
    read_embedded_prompt, read_metadata, EmbeddedPrompt, Provenance,
};
use promptdex::ingest::{decode_pixels, read_image_file, DecodeLimits};
use promptdex::store::{Catalog, Record};
use serde_json::{json, Value};

use crate::common::{promptdex, stderr};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metadata")
        .join(name)
}

/// The prompt of a fixture read from its chunks, which must have one.
fn read(name: &str) -> EmbeddedPrompt {
    match read_embedded_prompt(&fixture(name)) {
        Ok(Some(found)) => found,
        other => panic!("{name}: expected a prompt, got {other:?}"),
    }
}

/// `found`'s settings named in `expected`, which must all be there with exactly these values.
fn assert_settings(found: &EmbeddedPrompt, expected: Value) {
    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(
            found.parameters.get(key),
            Some(want),
            "{key} in {:?}",
            found.parameters
        );
    }
}

#[test]
fn swarmui_json_is_read_from_png_parameters_and_exif_user_comment() {
    let found = read("swarmui.png");
    assert_eq!(found.provenance, Provenance::SwarmUi);
    assert_eq!(found.location, "iTXt \"parameters\"");
    assert_eq!(found.prompt, "a photo of a red panda in a bamboo forest");
    assert_eq!(found.negative_prompt.as_deref(), Some("blurry, watermark"));
    assert_settings(
        &found,
        json!({"seed": 1234567890, "steps": 30, "cfg_scale": 6.5, "width": 1024, "height": 1024,
               "size": "1024x1024", "model": "OfficialStableDiffusion/sd_xl_base_1.0",
               "sampler": "dpmpp_2m", "scheduler": "karras", "version": "0.9.5.2"}),
    );
    assert!(!found.parameters.contains_key("sui_extra_data"));

    // UTF-16 behind `UNICODE`, both byte orders; every value a string, typed on reading.
    for (name, container) in [("swarmui.jpg", "JPEG"), ("swarmui.webp", "WebP")] {
        let found = read(name);
        assert_eq!(found.provenance, Provenance::SwarmUi, "{name}");
        assert_eq!(found.location, format!("{container} EXIF UserComment"));
        assert_eq!(found.prompt, "a lantern festival over a river, night");
        assert_eq!(
            found.negative_prompt, None,
            "an empty negative prompt is none"
        );
        assert_settings(
            &found,
            json!({"seed": 305223794, "steps": 25, "cfg_scale": 1.0, "width": 832,
                   "height": 1216, "size": "832x1216", "model": "Flux/flux1-dev-fp8",
                   "sampler": "euler", "scheduler": "simple"}),
        );
    }
}

#[test]
fn fooocus_is_read_from_jpeg_and_webp_exif_by_its_makernote_scheme() {
    // `fooocus` scheme: JSON in an IFD0 UserComment without a character-code prefix.
    let found = read("fooocus.jpg");
    assert_eq!(found.provenance, Provenance::JsonParameters);
    assert_eq!(found.location, "JPEG EXIF UserComment");
    assert_eq!(found.prompt, "a lighthouse on a cliff at dawn");
    assert_eq!(
        found.negative_prompt.as_deref(),
        Some("(worst quality, low quality:1.4)")
    );
    assert_settings(
        &found,
        json!({"seed": 2085531785, "steps": 60, "cfg_scale": 4.5, "width": 896, "height": 1152,
               "size": "896x1152", "model": "juggernautXL_v8Rundiffusion",
               "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras",
               "base_model_hash": "aeb7e9e689"}),
    );

    // `a1111` scheme: A1111 text.
    let found = read("fooocus_a1111.webp");
    assert_eq!(found.provenance, Provenance::ExifUserComment);
    assert_eq!(found.location, "WebP EXIF UserComment");
    assert_eq!(found.prompt, "a koi pond in autumn, maple leaves");
    assert_eq!(found.negative_prompt.as_deref(), Some("murky water"));
    assert_settings(
        &found,
        json!({"steps": 30, "sampler": "DPM++ 2M SDE Karras", "seed": 424242, "cfg_scale": 4,
               "size": "1152x896", "width": 1152, "height": 896,
               "model": "juggernautXL_v8Rundiffusion", "model_hash": "aeb7e9e689",
               "adm_guidance": "(1.5, 0.8, 0.3)", "version": "Fooocus v2.5.5"}),
    );

    // The PNG form (`parameters` + `fooocus_scheme`): seed typed, resolution as the size.
    let found = read("fooocus.png");
    assert_eq!(found.provenance, Provenance::JsonParameters);
    assert_settings(
        &found,
        json!({"seed": 12345, "steps": 30, "width": 1152, "height": 896, "size": "1152x896"}),
    );
}

#[test]
fn krita_ai_diffusion_itxt_parameters_are_read() {
    let found = read("krita.png");
    assert_eq!(found.provenance, Provenance::A1111Parameters);
    assert_eq!(found.location, "iTXt \"parameters\"");
    assert_eq!(
        found.prompt,
        "a watercolor fox in a misty forest <lora:watercolor_v2:0.7>"
    );
    assert_eq!(found.negative_prompt.as_deref(), Some("photo, 3d render"));
    assert_settings(
        &found,
        json!({"steps": 24, "sampler": "Euler a", "cfg_scale": 5.5, "seed": 1847362910,
               "size": "1024x768", "width": 1024, "height": 768, "model_hash": "unknown",
               "model": "zavychromaxl_v80.safetensors", "denoising_strength": 0.65}),
    );
}

/// The prompt of a fixture as indexing reads it: chunks, then the decoded pixels.
fn read_with_pixels(name: &str) -> EmbeddedPrompt {
    let path = fixture(name);
    let limits = DecodeLimits::default();
    let pixels = decode_pixels(&path, &read_image_file(&path, &limits).unwrap(), &limits).unwrap();
    let mut read = read_metadata(&path).unwrap();
    assert!(read.prompt.is_none(), "{name}: no prompt in its chunks");
    read.fill_from_pixels(&path, &pixels);
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    read.prompt
        .unwrap_or_else(|| panic!("{name}: no stealth prompt"))
}

#[test]
fn stealth_metadata_in_the_pixels_is_read() {
    let found = read_with_pixels("novelai_stealth.png");
    assert_eq!(found.provenance, Provenance::NovelAi);
    assert_eq!(found.location, "pixels (alpha LSB, stealth_pngcomp)");
    assert_eq!(found.prompt, "1girl, red kimono, cherry blossoms, night");
    assert_eq!(
        found.negative_prompt.as_deref(),
        Some("lowres, jpeg artifacts")
    );
    assert_settings(
        &found,
        json!({"steps": 28, "cfg_scale": 5.5, "seed": 1618033988, "width": 832, "height": 1216,
               "size": "832x1216", "sampler": "k_euler_ancestral",
               "model": "NovelAI Diffusion V4.5 4BDE2A90"}),
    );
    assert!(!found.parameters.contains_key("signed_hash"));

    let found = read_with_pixels("stealth_rgb.png");
    assert_eq!(found.provenance, Provenance::A1111Parameters);
    assert_eq!(found.location, "pixels (RGB LSB, stealth_rgbinfo)");
    assert_eq!(found.prompt, "a glass greenhouse full of ferns");
    assert_eq!(found.negative_prompt.as_deref(), Some("people"));
    assert_settings(
        &found,
        json!({"steps": 20, "sampler": "DPM++ 2M", "cfg_scale": 7, "seed": 8675309,
               "size": "512x512", "model": "v1-5-pruned-emaonly", "model_hash": "6ce0161689"}),
    );
}

#[test]
fn stealth_prompts_are_indexed_and_other_files_keep_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("images");
    std::fs::create_dir(&folder).unwrap();
    for name in [
        "novelai_stealth.png",
        "stealth_rgb.png",
        "krita.png",
        "no_prompt.png",
    ] {
        std::fs::copy(fixture(name), folder.join(name)).unwrap();
    }
    let index = tmp.path().join("index");
    let out = promptdex(
        &[
            "index",
            folder.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "index failed: {}", stderr(&out));
    let catalog = Catalog::open(&index.join("catalog")).unwrap();
    let mut prompts = Vec::new();
    for id in 0..catalog.next_id().unwrap() {
        if let Some(Record::Image(image)) = catalog.get(id).unwrap() {
            let name = image
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            prompts.push((name, image.prompt, image.provenance));
        }
    }
    prompts.sort();
    let text = |s: &str| Some(s.to_string());
    assert_eq!(
        prompts,
        vec![
            (
                "krita.png".to_string(),
                text("a watercolor fox in a misty forest <lora:watercolor_v2:0.7>"),
                text("a1111_parameters")
            ),
            ("no_prompt.png".to_string(), None, None),
            (
                "novelai_stealth.png".to_string(),
                text("1girl, red kimono, cherry blossoms, night"),
                text("novel_ai")
            ),
            (
                "stealth_rgb.png".to_string(),
                text("a glass greenhouse full of ferns"),
                text("a1111_parameters")
            ),
        ]
    );
}
