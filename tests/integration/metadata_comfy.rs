//! Modern ComfyUI files (written by `scripts/make_comfy_fixtures.py` from the layout ComfyUI's
//! front end serialises): primitive string nodes, subgraphs, nested subgraphs, promoted
//! widgets, `SamplerCustomAdvanced` with a guider inside a subgraph, each read from the API
//! `prompt` graph and from the `workflow` alone (the `prompt` chunk taken out); and the graphs
//! in WebP and JPEG EXIF.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use promptdex::ingest::metadata::{
    read_embedded_prompt, read_embedded_prompt_bytes, EmbeddedPrompt, Provenance,
};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metadata")
        .join(name)
}

/// The prompt of a fixture that must have one, read in well under a second.
fn read(name: &str) -> EmbeddedPrompt {
    let start = Instant::now();
    let found = match read_embedded_prompt(&fixture(name)) {
        Ok(Some(found)) => found,
        other => panic!("{name}: expected a prompt, got {other:?}"),
    };
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{name}: {took:?}");
    found
}

/// What a fixture must give: prompt, negative prompt and the main settings, exactly.
struct Expected {
    prompt: &'static str,
    negative: &'static str,
    settings: Value,
}

fn check(name: &str, found: &EmbeddedPrompt, expected: &Expected) {
    assert_eq!(found.prompt, expected.prompt, "{name}");
    assert_eq!(
        found.negative_prompt.as_deref(),
        Some(expected.negative),
        "{name}"
    );
    for (key, value) in expected.settings.as_object().unwrap() {
        assert_eq!(
            found.parameters.get(key),
            Some(value),
            "{name}: {key} in {:?}",
            found.parameters
        );
    }
}

/// The PNG without its `tEXt` chunk `keyword`.
fn without_text_chunk(png: &[u8], keyword: &str) -> Vec<u8> {
    let mut out = png[..8].to_vec();
    let mut at = 8;
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let chunk = &png[at..at + 12 + len];
        let data = &chunk[8..8 + len];
        let named = data.starts_with(keyword.as_bytes()) && data.get(keyword.len()) == Some(&0);
        if !(&chunk[4..8] == b"tEXt" && named) {
            out.extend_from_slice(chunk);
        }
        at += 12 + len;
    }
    out
}

/// `NAME.png` gives `expected` from its `prompt` graph (which wins over the `workflow`), and
/// again from the `workflow` alone once the `prompt` chunk is taken out.
fn check_both(name: &str, expected: &Expected) {
    let file = format!("{name}.png");
    let found = read(&file);
    assert_eq!(found.provenance, Provenance::ComfyUi, "{file}");
    assert_eq!(found.location, r#"tEXt "prompt""#, "{file}");
    check(&file, &found, expected);

    let bytes = without_text_chunk(&std::fs::read(fixture(&file)).unwrap(), "prompt");
    let start = Instant::now();
    let found = match read_embedded_prompt_bytes(&file, &bytes) {
        Ok(Some(found)) => found,
        other => panic!("{file} without its prompt chunk: {other:?}"),
    };
    assert!(start.elapsed() < Duration::from_secs(1), "{file}");
    assert_eq!(found.provenance, Provenance::ComfyUiWorkflow, "{file}");
    assert_eq!(found.location, r#"tEXt "workflow""#, "{file}");
    check(&file, &found, expected);
}

fn subgraph_expected() -> Expected {
    Expected {
        prompt: "a red fox in fresh snow, golden hour",
        negative: "deformed, extra limbs",
        settings: json!({"seed": 7777, "steps": 30, "cfg_scale": 5.0, "sampler": "euler_ancestral",
            "scheduler": "normal", "size": "1024x1024", "model": "juggernautXL_v9.safetensors"}),
    }
}

fn guider_expected() -> Expected {
    Expected {
        prompt: "an astronaut riding a horse on mars",
        negative: "cartoon, painting",
        settings: json!({"seed": 55555, "steps": 20, "cfg_scale": 4.5, "sampler": "euler",
            "scheduler": "simple", "denoise": 1.0, "size": "1024x576",
            "model": "flux1-dev.safetensors"}),
    }
}

fn promoted_expected() -> Expected {
    Expected {
        prompt: "a koi pond under cherry blossoms",
        negative: "noisy, oversaturated",
        settings: json!({"seed": 123456789, "steps": 24, "cfg_scale": 7.0, "sampler": "dpmpp_sde",
            "scheduler": "karras", "size": "640x896",
            "model": "epicrealism_naturalSin.safetensors"}),
    }
}

#[test]
fn comfyui_text_from_primitive_and_string_nodes() {
    // The positive encoder's own (stale) widget is not read: its text input is linked.
    let expected = Expected {
        prompt: "a lighthouse on a cliff at dawn",
        negative: "blurry, lowres",
        settings: json!({"seed": 424242, "steps": 28, "cfg_scale": 6.5, "sampler": "dpmpp_2m",
            "scheduler": "karras", "size": "768x512", "model": "dreamshaper_8.safetensors"}),
    };
    check_both("comfyui_primitive", &expected);
}

#[test]
fn comfyui_encoders_inside_a_subgraph() {
    check_both("comfyui_subgraph", &subgraph_expected());
}

#[test]
fn comfyui_nested_subgraphs_with_a_widget_on_the_inner_instance() {
    // Sampler in "Generate", encoders in "Encode" inside it; the positive text comes from a
    // string node in "Generate", the negative from a widget of the "Encode" instance; the
    // model from the loader in the outer graph.
    let expected = Expected {
        prompt: "a cathedral of glass in a desert",
        negative: "watermark, signature",
        settings: json!({"seed": 31337, "steps": 35, "cfg_scale": 7.5, "sampler": "dpmpp_2m_sde",
            "scheduler": "exponential", "size": "832x1216", "model": "realvisxlV50.safetensors"}),
    };
    check_both("comfyui_nested_subgraph", &expected);
}

#[test]
fn comfyui_promoted_widgets_replace_the_inner_values() {
    check_both("comfyui_promoted_widget", &promoted_expected());
}

#[test]
fn comfyui_sampler_custom_advanced_through_a_guider_in_a_subgraph() {
    check_both("comfyui_guider", &guider_expected());
}

#[test]
fn comfyui_graphs_in_webp_and_jpeg_exif() {
    // Make "Prompt: {...}" wins over ImageDescription "Workflow: {...}" (which comes first).
    let found = read("comfyui_exif_make.webp");
    assert_eq!(found.provenance, Provenance::ComfyUi);
    assert_eq!(found.location, "WebP EXIF Make");
    check("comfyui_exif_make.webp", &found, &subgraph_expected());

    // "prompt:{" without the space, in a big-endian TIFF in a JPEG.
    let found = read("comfyui_exif_make.jpg");
    assert_eq!(found.provenance, Provenance::ComfyUi);
    assert_eq!(found.location, "JPEG EXIF Make");
    check("comfyui_exif_make.jpg", &found, &guider_expected());

    // The workflow alone, in ImageDescription.
    let found = read("comfyui_exif_workflow.webp");
    assert_eq!(found.provenance, Provenance::ComfyUiWorkflow);
    assert_eq!(found.location, "WebP EXIF ImageDescription");
    check("comfyui_exif_workflow.webp", &found, &promoted_expected());
}
