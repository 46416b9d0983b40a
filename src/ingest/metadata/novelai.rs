//! NovelAI: the prompt in a `Description` text chunk, the settings as JSON in `Comment`
//! (`uc` is the negative prompt, `scale` the CFG scale), `Software` = `NovelAI`, and the model
//! in `Source`. Recent versions also put the prompt in `Comment` (`prompt`,
//! `v4_prompt.caption.base_caption`).

use serde_json::{Map, Value};

use super::params::{copy_scalars, json_object, size_of};
use super::{EmbeddedPrompt, Provenance};

type Detail = String;

/// Settings in `Comment` that are never copied into the parameters.
const SKIP: [&str; 6] = [
    "prompt",
    "uc",
    "signed_hash",
    "request_type",
    "v4_prompt",
    "v4_negative_prompt",
];

/// The NovelAI prompt, or `None` when the chunks are not NovelAI's. `Comment` that is not
/// JSON is an error only when `Software` says NovelAI.
pub(super) fn parse_novelai(
    description: Option<&str>,
    comment: Option<&str>,
    software: Option<&str>,
    source: Option<&str>,
) -> Result<Option<EmbeddedPrompt>, Detail> {
    let by_novelai = software.is_some_and(|s| s.trim().starts_with("NovelAI"));
    let settings = match comment {
        Some(text) => match json_object(text, "NovelAI Comment") {
            Ok(map) => map,
            Err(e) if by_novelai => return Err(e),
            Err(_) => Map::new(),
        },
        None => Map::new(),
    };
    let has_settings = ["uc", "steps", "scale", "sampler", "seed"]
        .iter()
        .any(|k| settings.contains_key(*k));
    if !(by_novelai || has_settings) {
        return Ok(None);
    }
    let caption = |key: &str| {
        settings
            .get(key)?
            .get("caption")?
            .get("base_caption")?
            .as_str()
    };
    let prompt = description
        .filter(|d| !d.trim().is_empty())
        .or_else(|| settings.get("prompt").and_then(Value::as_str))
        .or_else(|| caption("v4_prompt"));
    let Some(prompt) = prompt else {
        return Ok(None);
    };
    let negative = settings
        .get("uc")
        .and_then(Value::as_str)
        .or_else(|| caption("v4_negative_prompt"));
    let mut found = EmbeddedPrompt::new(Provenance::NovelAi, prompt).negative(negative);
    let params = &mut found.parameters;
    copy_scalars(&settings, params, &SKIP, &[("scale", "cfg_scale")]);
    if let Some(size) = size_of(params) {
        params.insert("size".into(), size);
    }
    if let Some(source) = source.map(str::trim).filter(|s| !s.is_empty()) {
        params.entry("model").or_insert(source.into());
    }
    Ok(found.has_text().then_some(found))
}
