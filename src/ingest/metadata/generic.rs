//! Two simpler conventions:
//!
//! - a JSON object in `parameters` with `prompt` and `negative_prompt`: Fooocus (its
//!   `fooocus` metadata scheme, in PNG `parameters` beside `fooocus_scheme`, and in EXIF
//!   `UserComment` beside a `MakerNote` naming the scheme, `modules/meta_parser.py`), whose
//!   `seed` is a string and `resolution` is `"(width, height)"`; a SwarmUI object
//!   (`sui_image_params`) is handed to `swarm`;
//! - a plain-text `prompt` chunk with one sibling chunk per setting (`negative_prompt`,
//!   `seed`, `num_inference_steps`, ...; Easy Diffusion).

use serde_json::{Map, Value};

use super::a1111::typed_value;
use super::params::{copy_scalars, json_object, numbers_from_strings, size_of};
use super::{swarm, EmbeddedPrompt, Provenance};

type Detail = String;

/// Whether text is meant as a JSON object (`{"...` or `{}`), as opposed to a prompt that
/// happens to start with a brace (`{red|blue} cat`).
pub(super) fn looks_like_json(text: &str) -> bool {
    text.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with(['"', '}']))
}

/// A JSON `parameters` object (Fooocus, or SwarmUI's); `None` when it has no prompt.
pub(super) fn parse_json_parameters(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let obj = json_object(text, "parameters")?;
    if obj.contains_key("sui_image_params") {
        return swarm::parse_swarm(&obj);
    }
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
    type_fooocus_settings(&mut found.parameters);
    Ok(found.has_text().then_some(found))
}

/// Fooocus writes `seed` as a string and the size as `resolution: "(1152, 896)"`: the seed
/// becomes a number and the resolution `width`, `height` and `size`.
fn type_fooocus_settings(params: &mut Map<String, Value>) {
    numbers_from_strings(params, &["seed", "steps"]);
    let resolution = params
        .get("resolution")
        .and_then(Value::as_str)
        .and_then(|r| {
            let (w, h) = r
                .trim()
                .strip_prefix('(')?
                .strip_suffix(')')?
                .split_once(',')?;
            Some((w.trim().parse::<u64>().ok()?, h.trim().parse::<u64>().ok()?))
        });
    if let Some((width, height)) = resolution {
        params.entry("width").or_insert(width.into());
        params.entry("height").or_insert(height.into());
        if let Some(size) = size_of(params) {
            params.entry("size").or_insert(size);
        }
    }
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
