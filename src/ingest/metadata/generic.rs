//! Two simpler conventions:
//!
//! - a JSON object in `parameters` with `prompt` and `negative_prompt` (Fooocus);
//! - a plain-text `prompt` chunk with one sibling chunk per setting (`negative_prompt`,
//!   `seed`, `num_inference_steps`, ...; Easy Diffusion).

use serde_json::Value;

use super::a1111::typed_value;
use super::params::{copy_scalars, json_object};
use super::{EmbeddedPrompt, Provenance};

type Detail = String;

/// Whether text is meant as a JSON object (`{"...` or `{}`), as opposed to a prompt that
/// happens to start with a brace (`{red|blue} cat`).
pub(super) fn looks_like_json(text: &str) -> bool {
    text.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with(['"', '}']))
}

/// A JSON `parameters` object; `None` when it has no `prompt` string.
pub(super) fn parse_json_parameters(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let obj = json_object(text, "parameters")?;
    let Some(prompt) = obj.get("prompt").and_then(Value::as_str) else {
        return Ok(None);
    };
    let negative = obj.get("negative_prompt").and_then(Value::as_str);
    let mut found = EmbeddedPrompt::new(Provenance::JsonParameters, prompt).negative(negative);
    copy_scalars(
        &obj,
        &mut found.parameters,
        &["prompt", "negative_prompt"],
        &[("guidance_scale", "cfg_scale"), ("base_model", "model")],
    );
    Ok(found.has_text().then_some(found))
}

/// Sibling chunks read as settings: (chunk keyword, parameter), keywords matched ignoring case.
const PLAIN_SETTINGS: [(&str, &str); 14] = [
    ("seed", "seed"),
    ("width", "width"),
    ("height", "height"),
    ("steps", "steps"),
    ("num_inference_steps", "steps"),
    ("guidance_scale", "cfg_scale"),
    ("sampler", "sampler"),
    ("sampler_name", "sampler"),
    ("stable diffusion model", "model"),
    ("use_stable_diffusion_model", "model"),
    ("use_vae_model", "vae"),
    ("vae model", "vae"),
    ("clip_skip", "clip_skip"),
    ("use_lora_model", "lora"),
];

/// A plain-text `prompt` with its siblings, read through `chunk(keyword)`.
pub(super) fn parse_plain_prompt<'a>(
    prompt: &str,
    chunk: impl Fn(&str) -> Option<&'a str>,
) -> Option<EmbeddedPrompt> {
    let negative = chunk("negative_prompt").or_else(|| chunk("negative prompt"));
    let mut found = EmbeddedPrompt::new(Provenance::PlainPrompt, prompt).negative(negative);
    for (keyword, key) in PLAIN_SETTINGS {
        let Some(text) = chunk(keyword).map(str::trim).filter(|t| !t.is_empty()) else {
            continue;
        };
        let value = match key {
            "model" | "vae" | "lora" | "sampler" => Value::String(text.to_string()),
            _ => typed_value(text.to_string()),
        };
        found.parameters.entry(key).or_insert(value);
    }
    found.has_text().then_some(found)
}
