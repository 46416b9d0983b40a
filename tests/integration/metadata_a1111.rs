//! Draw Things XMP, the A1111 extras (hashes, Civitai resources, a prompt line starting with
//! `Steps:`), UserComment in IFD0 as BYTE and the GIF comment, one fixture each (written by
//! `scripts/make_a1111_xmp_fixtures.py`); and `to_infotext`, A1111 text written back: the
//! same text for the real stable-diffusion.cpp files, and the same settings read back for
//! every front-end's fixture.

use std::path::{Path, PathBuf};

use promptdex::ingest::metadata::{
    parse_a1111_parameters, read_embedded_prompt, read_metadata_bytes, to_infotext, EmbeddedPrompt,
    Provenance,
};
use serde_json::{json, Value};

use crate::common::data_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metadata")
        .join(name)
}

fn read(path: &Path) -> EmbeddedPrompt {
    match read_embedded_prompt(path) {
        Ok(Some(found)) => found,
        other => panic!("{}: expected a prompt, got {other:?}", path.display()),
    }
}

fn params(found: &EmbeddedPrompt, keys: &[&str]) -> Value {
    let picked = keys.iter().map(|k| {
        (
            k.to_string(),
            found.parameters.get(*k).cloned().unwrap_or(Value::Null),
        )
    });
    Value::Object(picked.collect())
}

const MAIN: [&str; 8] = [
    "steps",
    "sampler",
    "cfg_scale",
    "seed",
    "size",
    "width",
    "height",
    "model",
];

#[test]
fn draw_things_xmp_reads_the_user_comment_json() {
    let found = read(&fixture("drawthings_xmp.png"));
    assert_eq!(found.provenance, Provenance::DrawThings);
    assert_eq!(found.location, r#"iTXt "XML:com.adobe.xmp""#);
    assert_eq!(
        found.prompt,
        "a lighthouse on a cliff, <storm> & spray,\nlong exposure"
    );
    assert_eq!(found.negative_prompt.as_deref(), Some("blurry, text"));
    assert_eq!(
        params(&found, &MAIN),
        json!({"steps": 30, "sampler": "DPM++ 2M Karras", "cfg_scale": 5.5,
            "seed": 2441935286u64, "size": "768x1152", "width": 768, "height": 1152,
            "model": "sd_xl_base_1.0_f16.ckpt"})
    );
    assert_eq!(found.parameters["seed_mode"], json!("Scale Alike"));
    assert!(
        !found.parameters.contains_key("v2"),
        "nested objects are not settings"
    );
}

#[test]
fn a1111_extras_are_parsed_into_parameters() {
    let found = read(&fixture("a1111_extras.png"));
    assert_eq!(found.provenance, Provenance::A1111Parameters);
    // A prompt line starting with `Steps:` stays in the prompt: only the last line is settings.
    assert_eq!(
        found.prompt,
        "castle interior, grand staircase\nSteps: carved in marble, lit by torches"
    );
    assert_eq!(found.negative_prompt.as_deref(), Some("lowres, watermark"));
    assert_eq!(
        params(&found, &MAIN),
        json!({"steps": 25, "sampler": "DPM++ SDE", "cfg_scale": 7, "seed": 1234567890,
            "size": "832x1216", "width": 832, "height": 1216, "model": "juggernautXL_v9"})
    );
    let p = &found.parameters;
    assert_eq!(p["schedule_type"], json!("Karras"));
    assert_eq!(p["model_hash"], json!("4199bcdd14"));
    assert_eq!(
        p["lora_hashes"],
        json!("add_detail: 7c6bad76eb54, epi_noise: 0aa4b2d5b2a0")
    );
    assert_eq!(
        p["loras"],
        json!({"add_detail": "7c6bad76eb54", "epi_noise": "0aa4b2d5b2a0"})
    );
    assert_eq!(p["embeddings"], json!({"easynegative": "c74b4e810b03"}));
    assert_eq!(
        p["hashes"],
        json!({"vae": "235745af8d", "model": "4199bcdd14", "lora:add_detail": "7c6bad76eb54"})
    );
    assert_eq!(
        p["civitai_resources"],
        json!([
            {"type": "checkpoint", "modelVersionId": 290640},
            {"type": "lora", "modelVersionId": 62833, "weight": 0.6},
            {"type": "unknown", "modelVersionId": 9208}
        ])
    );
    assert_eq!(p["version"], json!("v1.9.3"));
}

#[test]
fn a1111_json_values_and_the_steps_line_rule() {
    // Unquoted JSON with commas and colons inside strings, then more settings after it.
    let text = r#"a cat
Steps: 5, Hashes: {"model": "a, b: c", "x": "]"}, Civitai metadata: {}, Seed: 3, CFG scale: 2"#;
    let p = parse_a1111_parameters(text).unwrap().parameters;
    assert_eq!(p["hashes"], json!({"model": "a, b: c", "x": "]"}));
    assert_eq!(p["civitai_metadata"], json!({}));
    assert_eq!(
        (p["seed"].clone(), p["cfg_scale"].clone()),
        (json!(3), json!(2))
    );
    // Broken JSON stays text, and the pairs after it are still read.
    let p = parse_a1111_parameters("x\nSteps: 1, Hashes: {\"a\": 1, Seed: 4")
        .unwrap()
        .parameters;
    assert_eq!(p["seed"], json!(4));
    assert!(p.get("hashes").is_none(), "{p:?}");
    // JSON nested over 4 deep stays text (a stored record stays far from serde_json's limit).
    let p = parse_a1111_parameters("x\nSteps: 1, A: [[[[1]]]], B: [[[[[2]]]]], Seed: 5")
        .unwrap()
        .parameters;
    assert_eq!(p["a"], json!([[[[1]]]]));
    assert_eq!(p["b"], json!("[[[[[2]]]]]"));
    assert_eq!(p["seed"], json!(5));
    // A prompt of one line that only looks like settings is not read as settings unless it
    // starts with Steps, as in A1111.
    let found = parse_a1111_parameters("Steps: 3, stairs: stone, light: warm").unwrap();
    assert_eq!(found.prompt, "");
    assert_eq!(found.parameters["stairs"], json!("stone"));
}

#[test]
fn user_comment_in_ifd0_as_byte_is_read() {
    let found = read(&fixture("a1111_ifd0_byte.jpg"));
    assert_eq!(found.provenance, Provenance::ExifUserComment);
    assert_eq!(found.location, "JPEG EXIF UserComment");
    assert_eq!(found.prompt, "a koi pond in autumn, maple leaves");
    assert_eq!(found.negative_prompt.as_deref(), Some("people"));
    assert_eq!(
        params(&found, &MAIN),
        json!({"steps": 18, "sampler": "Euler a", "cfg_scale": 6, "seed": 77,
            "size": "640x640", "width": 640, "height": 640, "model": "dreamshaper_8"})
    );
}

#[test]
fn a1111_gif_comment_is_read() {
    let found = read(&fixture("a1111_comment.gif"));
    assert_eq!(found.provenance, Provenance::A1111Parameters);
    assert_eq!(found.location, "GIF comment");
    assert_eq!(
        found.prompt,
        "pixel art, a tiny dragon — 竜, idle animation"
    );
    assert_eq!(found.negative_prompt.as_deref(), Some("photo"));
    assert_eq!(
        params(&found, &MAIN),
        json!({"steps": 12, "sampler": "Euler", "cfg_scale": 4.5, "seed": 9001,
            "size": "64x64", "width": 64, "height": 64, "model": "pixelart_v2"})
    );
    // A GIF without a comment is read without a warning (GIF used to be "not an image").
    let bytes = std::fs::read(fixture("a1111_comment.gif")).unwrap();
    let plain: Vec<u8> = [&bytes[..27], &bytes[bytes.len() - 16..]].concat();
    let read = read_metadata_bytes("plain.gif", &plain);
    assert_eq!((read.prompt, read.warnings), (None, vec![]));
    let cut = read_metadata_bytes("cut.gif", &bytes[..40]);
    assert!(cut.prompt.is_none());
    assert!(
        cut.warnings[0].detail.contains("truncated GIF"),
        "{:?}",
        cut.warnings
    );
}

/// The text of a PNG's `tEXt "parameters"` chunk, read here by hand.
fn parameters_chunk(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let data = &bytes[at + 8..at + 8 + len];
        if &bytes[at + 4..at + 8] == b"tEXt" && data.starts_with(b"parameters\0") {
            return Some(String::from_utf8(data[11..].to_vec()).unwrap());
        }
        at += 12 + len;
    }
    None
}

fn sdcpp_images() -> Vec<PathBuf> {
    let dir = data_dir().join("eval/sdcpp_lovely_cat/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set PROMPTDEX_DATA)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

#[test]
fn infotext_of_the_real_sdcpp_files_is_their_text() {
    let mut compared = 0;
    for path in sdcpp_images() {
        let Some(text) = parameters_chunk(&path) else {
            continue;
        };
        assert_eq!(to_infotext(&read(&path)), text, "{}", path.display());
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} files carry parameters");
}

#[test]
fn infotext_written_from_parameters_reads_back_the_same() {
    let mut files: Vec<PathBuf> = sdcpp_images()
        .into_iter()
        .filter(|p| parameters_chunk(p).is_some())
        .collect();
    for name in [
        "a1111_text.png",
        "a1111_extras.png",
        "a1111_comment.gif",
        "sidecar.png",
    ] {
        files.push(fixture(name));
    }
    for path in files {
        let mut found = read(&path);
        found.settings_line = None;
        let text = to_infotext(&found);
        let back = parse_a1111_parameters(&text).unwrap();
        let what = format!("{}: {text}", path.display());
        assert_eq!(back.prompt, found.prompt, "{what}");
        assert_eq!(back.negative_prompt, found.negative_prompt, "{what}");
        assert_eq!(back.parameters, found.parameters, "{what}");
    }
}

#[test]
fn infotext_of_other_front_ends() {
    let cases = [
        (
            "drawthings_xmp.png",
            "a lighthouse on a cliff, <storm> & spray,\nlong exposure\n\
             Negative prompt: blurry, text\n\
             Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5.5, Seed: 2441935286, \
             Size: 768x1152, Model: sd_xl_base_1.0_f16.ckpt, Seed mode: Scale Alike, Shift: 1, \
             Strength: 1",
        ),
        (
            "novelai.png",
            "1girl, silver hair, starry sky\nNegative prompt: lowres, bad hands\n\
             Steps: 28, Sampler: k_euler_ancestral, CFG scale: 5.0, Seed: 2718281828, \
             Size: 832x1216, Model: Stable Diffusion XL C1E1DE52, N samples: 1, \
             Noise schedule: native",
        ),
        (
            "comfyui_prompt.png",
            "a fluffy orange cat, sitting in a sunbeam\nNegative prompt: watermark, text\n\
             Steps: 25, Sampler: dpmpp_2m, CFG scale: 6.0, Seed: 156680208700286, \
             Size: 1024x768, Model: sd_xl_base_1.0.safetensors, Denoise: 1.0, \
             Scheduler: karras",
        ),
    ];
    for (name, expected) in cases {
        let found = read(&fixture(name));
        assert_eq!(to_infotext(&found), expected, "{name}");
    }
}
