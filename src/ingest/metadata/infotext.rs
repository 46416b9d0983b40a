//! Any front-end's prompt written back as AUTOMATIC1111's `parameters` text (its "infotext"),
//! so that the settings of a ComfyUI, NovelAI, InvokeAI or Draw Things image can be pasted
//! into A1111's prompt box or PNG Info tab.
//!
//! The layout follows A1111's `create_infotext` (`modules/processing.py`): the prompt, then
//! `Negative prompt: ...` when there is one, then one line of `Key: value` pairs joined by
//! `, `, the whole trimmed. The keys come in `create_infotext`'s order (`Steps`, `Sampler`,
//! `Schedule type`, `CFG scale`, `Image CFG scale`, `Seed`, `Face restoration`, `Size`,
//! `Model hash`, `Model`, `VAE hash`, `VAE`, ... `RNG`, `Tiling`), then the other settings
//! (extensions' and other front-ends' own, alphabetical), then `Version` and `User` last, as
//! A1111 appends them. Values are quoted by the rule of `infotext_utils.quote`: a string with a
//! comma, colon or newline is written as a JSON string; booleans are Python's `True`/`False`;
//! JSON objects and arrays (`Hashes`, `Civitai resources`) are written as compact JSON, unquoted,
//! the way the Civitai extension and generator write them.
//!
//! Text read from A1111-style `parameters` keeps its settings line as written, so it comes back
//! unchanged (key spelling, order and number formatting, `CFG scale: 4.500000`, included).

use serde_json::{Map, Value};

use super::params::size_of;
use super::EmbeddedPrompt;

/// A1111's own settings, in `create_infotext`'s order, with their labels.
const LEADING: [(&str, &str); 24] = [
    ("steps", "Steps"),
    ("sampler", "Sampler"),
    ("schedule_type", "Schedule type"),
    ("cfg_scale", "CFG scale"),
    ("image_cfg_scale", "Image CFG scale"),
    ("seed", "Seed"),
    ("face_restoration", "Face restoration"),
    ("size", "Size"),
    ("model_hash", "Model hash"),
    ("model", "Model"),
    ("vae_hash", "VAE hash"),
    ("vae", "VAE"),
    ("variation_seed", "Variation seed"),
    ("variation_seed_strength", "Variation seed strength"),
    ("seed_resize_from", "Seed resize from"),
    ("denoising_strength", "Denoising strength"),
    ("conditional_mask_weight", "Conditional mask weight"),
    ("clip_skip", "Clip skip"),
    ("ensd", "ENSD"),
    ("token_merging_ratio", "Token merging ratio"),
    ("token_merging_ratio_hr", "Token merging ratio hr"),
    ("init_image_hash", "Init image hash"),
    ("rng", "RNG"),
    ("tiling", "Tiling"),
];

/// Settings A1111 writes after every extension's.
const TRAILING: [(&str, &str); 2] = [("version", "Version"), ("user", "User")];

/// Labels of extension settings whose case the generic rule would get wrong.
const LABELS: [(&str, &str); 4] = [
    ("lora_hashes", "Lora hashes"),
    ("ti_hashes", "TI hashes"),
    ("hashes", "Hashes"),
    ("civitai_resources", "Civitai resources"),
];

/// Keys that are not settings of their own: `width`/`height` are in `Size`, `loras` and
/// `embeddings` are derived from `Lora hashes` and `TI hashes`, the rest is promptdex's.
const NOT_WRITTEN: [&str; 5] = [
    "width",
    "height",
    "loras",
    "embeddings",
    "prompt_cut_from_bytes",
];

/// Words written in capitals when a label is made from a key.
const ACRONYMS: [&str; 5] = ["cfg", "vae", "rng", "ensd", "ti"];

/// `found` as A1111 `parameters` text (see the module documentation). Empty settings give no
/// settings line; a prompt with nothing at all gives an empty string.
pub fn to_infotext(found: &EmbeddedPrompt) -> String {
    let mut out = found.prompt.clone();
    if let Some(negative) = &found.negative_prompt {
        out.push_str("\nNegative prompt: ");
        out.push_str(negative);
    }
    let settings = match &found.settings_line {
        Some(line) => line.clone(),
        None => settings_line(&found.parameters),
    };
    out.push('\n');
    out.push_str(&settings);
    out.trim().to_string()
}

/// The settings line written from `params`.
fn settings_line(params: &Map<String, Value>) -> String {
    let mut pairs: Vec<String> = Vec::new();
    let mut push = |label: &str, value: &Value| {
        if let Some(text) = value_text(value) {
            pairs.push(format!("{label}: {text}"));
        }
    };
    for (key, label) in LEADING {
        match params.get(key) {
            Some(value) => push(label, value),
            None if key == "size" => {
                if let Some(size) = size_of(params) {
                    push(label, &size);
                }
            }
            None => {}
        }
    }
    let listed = |key: &str| {
        LEADING.iter().chain(&TRAILING).any(|(k, _)| *k == key) || NOT_WRITTEN.contains(&key)
    };
    for (key, value) in params.iter().filter(|(k, _)| !listed(k)) {
        push(&label_of(key), value);
    }
    for (key, label) in TRAILING {
        if let Some(value) = params.get(key) {
            push(label, value);
        }
    }
    pairs.join(", ")
}

/// The label for a settings key: `hires_upscaler` -> `Hires upscaler`, `cfg_rescale` ->
/// `CFG rescale`.
fn label_of(key: &str) -> String {
    if let Some((_, label)) = LABELS.iter().find(|(k, _)| *k == key) {
        return label.to_string();
    }
    let words: Vec<String> = key
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, word)| match (ACRONYMS.contains(&word), i) {
            (true, _) => word.to_uppercase(),
            (false, 0) => capitalise(word),
            (false, _) => word.to_string(),
        })
        .collect();
    words.join(" ")
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// How a value is written; `None` for values A1111 would leave out (null, empty text).
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if s.contains([',', ':', '\n']) => serde_json::to_string(s).ok(),
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::metadata::Provenance;
    use serde_json::json;

    fn prompt(params: Value) -> EmbeddedPrompt {
        let mut found = EmbeddedPrompt::new(Provenance::ComfyUi, "a cat");
        found.parameters = params.as_object().unwrap().clone();
        found
    }

    #[test]
    fn settings_follow_a1111_order_and_quoting() {
        let found = prompt(json!({
            "seed": 42, "steps": 20, "cfg_scale": 7.5, "sampler": "euler",
            "width": 512, "height": 768, "version": "x", "scheduler": "karras",
            "model": "a, b: c", "tiling": true, "cfg_rescale": 0.7, "note": "",
            "hashes": {"model": "abc"}, "loras": {"x": "1"}
        }));
        assert_eq!(
            to_infotext(&found),
            "a cat\nSteps: 20, Sampler: euler, CFG scale: 7.5, Seed: 42, Size: 512x768, \
             Model: \"a, b: c\", Tiling: True, CFG rescale: 0.7, Hashes: {\"model\":\"abc\"}, \
             Scheduler: karras, Version: x"
        );
    }

    #[test]
    fn negative_prompt_and_empty_settings() {
        let mut found = prompt(json!({}));
        assert_eq!(to_infotext(&found), "a cat");
        found.negative_prompt = Some("dog".into());
        assert_eq!(to_infotext(&found), "a cat\nNegative prompt: dog");
        found.settings_line = Some("Steps: 1, CFG scale: 4.500000".into());
        assert_eq!(
            to_infotext(&found),
            "a cat\nNegative prompt: dog\nSteps: 1, CFG scale: 4.500000"
        );
    }

    #[test]
    fn labels_from_keys() {
        assert_eq!(label_of("hires_upscaler"), "Hires upscaler");
        assert_eq!(label_of("ti_hashes"), "TI hashes");
        assert_eq!(label_of("vae_encoder"), "VAE encoder");
        assert_eq!(label_of("n_samples"), "N samples");
        assert_eq!(label_of("élan"), "Élan");
    }
}
