//! InvokeAI, three generations of it:
//!
//! - `invokeai_metadata` (3.0 and later): a JSON object with `positive_prompt`,
//!   `negative_prompt` and the settings (`seed`, `steps`, `cfg_scale`, `scheduler`, a `model`
//!   object, ...).
//! - `sd-metadata` (2.x): JSON whose `image.prompt` is a string or a list of
//!   `{prompt, weight}`; the negative prompt sits inside the prompt in `[brackets]`.
//! - `Dream` (1.x-2.x): a command line, `"a cat [blurry]" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A
//!   k_lms`.

use serde_json::{Map, Value};

use super::a1111::typed_value;
use super::params::{copy_scalars, json_object, size_of};
use super::{EmbeddedPrompt, Provenance};

type Detail = String;

/// `invokeai_metadata`; `None` when it has no prompt.
pub(super) fn parse_invokeai_metadata(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let obj = json_object(text, "invokeai_metadata")?;
    let Some(prompt) = obj
        .get("positive_prompt")
        .or_else(|| obj.get("prompt"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let negative = obj.get("negative_prompt").and_then(Value::as_str);
    let mut found = EmbeddedPrompt::new(Provenance::InvokeAi, prompt).negative(negative);
    let params = &mut found.parameters;
    if let Some(model) = obj.get("model").and_then(Value::as_object) {
        copy_scalars(
            model,
            params,
            &["key", "type"],
            &[
                ("name", "model"),
                ("model_name", "model"),
                ("hash", "model_hash"),
                ("base", "base_model"),
            ],
        );
    } else if let Some(model) = obj.get("model").filter(|m| m.is_string()) {
        params.insert("model".into(), model.clone());
    }
    copy_scalars(
        &obj,
        params,
        &["positive_prompt", "negative_prompt", "prompt", "model"],
        &[("scheduler", "sampler")],
    );
    Ok(found.has_text().then_some(found))
}

/// `sd-metadata`; `None` when it has no `image.prompt`.
pub(super) fn parse_sd_metadata(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let obj = json_object(text, "sd-metadata")?;
    let Some(image) = obj.get("image").and_then(Value::as_object) else {
        return Ok(None);
    };
    let prompt = match image.get("prompt") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => weighted_prompts(parts),
        _ => return Ok(None),
    };
    let (positive, negative) = split_brackets(&prompt);
    let mut found =
        EmbeddedPrompt::new(Provenance::InvokeAiLegacy, positive).negative(negative.as_deref());
    let params = &mut found.parameters;
    copy_scalars(image, params, &["prompt"], &[]);
    copy_scalars(
        &obj,
        params,
        &["image"],
        &[("model_weights", "model"), ("model", "model_family")],
    );
    Ok(found.has_text().then_some(found))
}

/// `[{prompt, weight}, ...]`: the text itself when there is one, else `text:weight` for each.
fn weighted_prompts(parts: &[Value]) -> String {
    let parts: Vec<(&str, Option<&Value>)> = parts
        .iter()
        .filter_map(|p| match p {
            Value::String(text) => Some((text.as_str(), None)),
            Value::Object(o) => Some((o.get("prompt")?.as_str()?, o.get("weight"))),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [(text, _)] => text.to_string(),
        _ => parts
            .iter()
            .map(|(text, weight)| match weight {
                Some(w) => format!("{text}:{w}"),
                None => text.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `a cat [blurry, ugly] at night` -> (`a cat at night`, `blurry, ugly`).
fn split_brackets(prompt: &str) -> (String, Option<String>) {
    let mut positive = String::new();
    let mut negatives = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in prompt.chars() {
        match c {
            '[' => {
                if depth > 0 {
                    current.push(c);
                }
                depth += 1;
            }
            ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    negatives.push(std::mem::take(&mut current).trim().to_string());
                } else {
                    current.push(c);
                }
            }
            _ if depth > 0 => current.push(c),
            _ => positive.push(c),
        }
    }
    if depth > 0 {
        negatives.push(current.trim().to_string());
    }
    negatives.retain(|n| !n.is_empty());
    let positive = positive.split_whitespace().collect::<Vec<_>>().join(" ");
    let negative = (!negatives.is_empty()).then(|| negatives.join(", "));
    (positive, negative)
}

/// Dream's flags and the settings they set.
const DREAM_FLAGS: [(&str, &str, &str); 9] = [
    ("-s", "--steps", "steps"),
    ("-S", "--seed", "seed"),
    ("-W", "--width", "width"),
    ("-H", "--height", "height"),
    ("-C", "--cfg_scale", "cfg_scale"),
    ("-A", "--sampler", "sampler"),
    ("-f", "--strength", "strength"),
    ("-I", "--init_img", "init_image"),
    ("-G", "--gfpgan_strength", "gfpgan_strength"),
];

/// The `Dream` command line; `None` when it holds no prompt.
pub(super) fn parse_dream(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let words = shell_words(text);
    let Some((prompt, flags)) = words.split_first() else {
        return Ok(None);
    };
    let (positive, negative) = split_brackets(prompt);
    let mut found =
        EmbeddedPrompt::new(Provenance::InvokeAiDream, positive).negative(negative.as_deref());
    let mut i = 0;
    while i < flags.len() {
        let flag = flags[i].as_str();
        i += 1;
        if !flag.starts_with('-') || is_number(flag) {
            continue;
        }
        let key = DREAM_FLAGS
            .iter()
            .find(|(short, long, _)| flag == *short || flag == *long)
            .map_or_else(
                || flag.trim_start_matches('-').to_string(),
                |f| f.2.to_string(),
            );
        let value = match flags.get(i) {
            Some(v) if !v.starts_with('-') || is_number(v) => {
                i += 1;
                typed_value(v.clone())
            }
            _ => Value::Bool(true),
        };
        insert_new(&mut found.parameters, key, value);
    }
    if let Some(size) = size_of(&found.parameters) {
        insert_new(&mut found.parameters, "size".into(), size);
    }
    Ok(found.has_text().then_some(found))
}

fn insert_new(params: &mut Map<String, Value>, key: String, value: Value) {
    if !key.is_empty() {
        params.entry(key).or_insert(value);
    }
}

fn is_number(word: &str) -> bool {
    word.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Splits a command line into words: double or single quotes group, a backslash escapes the
/// next character (inside double quotes and outside any).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(_), _) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, _) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_are_the_negative_prompt() {
        let (p, n) = split_brackets("a cat [blurry, ugly] at night [text]");
        assert_eq!(p, "a cat at night");
        assert_eq!(n.as_deref(), Some("blurry, ugly, text"));
        assert_eq!(split_brackets("a dog"), ("a dog".to_string(), None));
    }

    #[test]
    fn command_line_words() {
        let words = shell_words(r#""a \"big\" cat" -s 5 -A 'k lms'"#);
        assert_eq!(words, ["a \"big\" cat", "-s", "5", "-A", "k lms"]);
    }
}
