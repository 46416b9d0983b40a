//! Holds an embedded prompt to the limits every prompt source shares: the prompt and the
//! negative prompt are cut to [`MAX_PROMPT_BYTES`] at a character boundary, and settings are
//! kept only while they are small (one string value at most [`MAX_PROMPT_BYTES`], all of
//! them at most [`MAX_PARAMETERS_BYTES`]). Each cut is a warning.

use super::{EmbeddedPrompt, Scan};
use crate::ingest::limits::{cut_at_char_boundary, MAX_PARAMETERS_BYTES, MAX_PROMPT_BYTES};

/// `found`, within the limits; what was cut is noted in `scan`.
pub(super) fn cap(mut found: EmbeddedPrompt, scan: &mut Scan) -> EmbeddedPrompt {
    let location = found.location.clone();
    if let Some(original) = cut(&mut found.prompt) {
        scan.cut(
            &location,
            format!("prompt of {original} bytes cut to the {MAX_PROMPT_BYTES}-byte limit"),
        );
        found
            .parameters
            .insert("prompt_cut_from_bytes".into(), original.into());
    }
    if let Some(negative) = &mut found.negative_prompt {
        if let Some(original) = cut(negative) {
            scan.cut(
                &location,
                format!(
                    "negative prompt of {original} bytes cut to the {MAX_PROMPT_BYTES}-byte limit"
                ),
            );
        }
    }
    let mut total = 0usize;
    let mut dropped = Vec::new();
    found.parameters.retain(|key, value| {
        let size = key.len() + value_size(value);
        let keep = size <= MAX_PROMPT_BYTES && total + size <= MAX_PARAMETERS_BYTES;
        match keep {
            true => total += size,
            false => dropped.push(key.clone()),
        }
        keep
    });
    if !dropped.is_empty() {
        let shown: Vec<&str> = dropped.iter().take(5).map(String::as_str).collect();
        scan.cut(
            &location,
            format!(
                "{} settings dropped ({}{}): over the {MAX_PROMPT_BYTES}-byte limit for one or {MAX_PARAMETERS_BYTES} for all",
                dropped.len(),
                shown.join(", "),
                if dropped.len() > shown.len() { ", ..." } else { "" }
            ),
        );
    }
    found
}

/// What a setting's value costs: its text, its JSON for a list or object, 16 for a scalar.
fn value_size(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(text) => text.len(),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => value.to_string().len(),
        _ => 16,
    }
}

/// Cuts `text` to [`MAX_PROMPT_BYTES`]; its length before, when it was cut.
fn cut(text: &mut String) -> Option<usize> {
    let original = text.len();
    let kept = cut_at_char_boundary(text, MAX_PROMPT_BYTES)
        .trim_end()
        .len();
    (original > MAX_PROMPT_BYTES).then(|| {
        text.truncate(kept);
        original
    })
}
