//! The AUTOMATIC1111 `parameters` text, also written by Forge and stable-diffusion.cpp:
//!
//! ```text
//! the prompt, possibly
//! over several lines
//! Negative prompt: the negative prompt, possibly
//! over several lines
//! Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, Lora hashes: "a: 1, b: 2"
//! ```
//!
//! The last line holds the settings as `Key: value` pairs separated by commas; a value with
//! commas, colons or newlines is written as a JSON string (A1111's `infotext_utils.quote`).
//! A line counts as the settings line when it parses as such pairs and has at least three of
//! them (the rule of A1111's `parse_generation_parameters` in `modules/infotext_utils.py`),
//! or starts with `Steps:`; only the last line can be it, so a prompt line that itself starts
//! with `Steps:` stays in the prompt. Extensions that append `Key: value` lines after it
//! (Dynamic Prompts' `Template:`) are handled too. Values that are unquoted JSON objects or
//! arrays (`Hashes: {...}`, `Civitai resources: [...]`) are read as JSON; see `a1111_extras`
//! for the structures derived from them.
//!
//! The settings line is also kept as written (up to [`MAX_PARAMETERS_BYTES`]) so that
//! [`to_infotext`](super::to_infotext) gives the text back unchanged.

use serde_json::{Map, Number, Value};

use super::a1111_extras::add_extras;
use super::{EmbeddedPrompt, Provenance};
use crate::ingest::limits::MAX_PARAMETERS_BYTES;

/// JSON values tried per settings line: each try may scan the rest of the line, so a hostile
/// line of unclosed brackets costs this many scans at most (real lines hold two or three).
const MAX_JSON_VALUES: usize = 16;

/// Deepest JSON value kept as JSON (the extras nest two deep); deeper stays text, so a stored
/// record never nears `serde_json`'s recursion limit when the catalog reads it back.
const MAX_JSON_DEPTH: usize = 4;

/// Settings whose values stay strings even when they look like numbers (hashes, names).
const STRING_KEYS: [&str; 7] = [
    "hash", "model", "version", "vae", "sampler", "schedule", "name",
];

/// Parses AUTOMATIC1111-style `parameters` text into prompt, negative prompt and typed
/// settings (`Steps: 20` becomes `"steps": 20`, `Size: 512x512` becomes `"size": "512x512"`
/// plus `"width": 512, "height": 512`).
///
/// Without a settings line the whole text (less any `Negative prompt:` part) is the prompt.
/// Returns `None` only for text that is empty or all whitespace. The result's `location` is
/// empty: the caller knows where the text came from.
pub fn parse_a1111_parameters(text: &str) -> Option<EmbeddedPrompt> {
    let parts = Parts::of(text)?;
    let mut found = EmbeddedPrompt::new(Provenance::A1111Parameters, parts.prompt)
        .negative(parts.negative.as_deref());
    for pair in parts.settings {
        insert_setting(&mut found.parameters, pair);
    }
    add_extras(&mut found.parameters);
    if !parts.written.is_empty() && parts.written.len() <= MAX_PARAMETERS_BYTES {
        found.settings_line = Some(parts.written);
    }
    Some(found)
}

/// The fields of A1111 `parameters` text under A1111's own names, as its API's `png-info`
/// answers them (`parse_generation_parameters` in `modules/infotext_utils.py`): `Prompt` and
/// `Negative prompt` (empty when absent), then each setting as written, its value as text
/// (unquoted; a JSON value as compact JSON), and a `WxH` value as two fields, `Key-1` and
/// `Key-2` (`Size: 512x768` gives `Size-1` 512 and `Size-2` 768). A1111 also adds its UI's
/// defaults for settings the text lacks (`Clip skip`, `Hires resize-1`, …); these are left out:
/// they describe a UI, not the image.
pub fn infotext_fields(text: &str) -> Map<String, Value> {
    let parts = Parts::of(text);
    let mut fields = Map::new();
    let (prompt, negative, settings) = match parts {
        Some(p) => (p.prompt, p.negative.unwrap_or_default(), p.settings),
        None => (String::new(), String::new(), Vec::new()),
    };
    fields.insert("Prompt".into(), Value::String(prompt.trim().to_string()));
    fields.insert(
        "Negative prompt".into(),
        Value::String(negative.trim().to_string()),
    );
    for pair in settings {
        let value = match pair.json {
            Some(json) => json.to_string(),
            None => pair.value,
        };
        match image_size(&value) {
            Some((width, height)) => {
                fields.insert(format!("{}-1", pair.key), Value::String(width.into()));
                fields.insert(format!("{}-2", pair.key), Value::String(height.into()));
            }
            None => {
                fields.insert(pair.key, Value::String(value));
            }
        }
    }
    fields
}

/// The two numbers of a `WxH` value (A1111's `re_imagesize`, `^(\d+)x(\d+)$`).
fn image_size(value: &str) -> Option<(&str, &str)> {
    let (width, height) = value.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(width) && digits(height)).then_some((width, height))
}

/// `parameters` text taken apart: what both readings of it start from.
struct Parts {
    /// The prompt lines, untrimmed.
    prompt: String,
    /// The negative prompt lines after `Negative prompt:`, untrimmed.
    negative: Option<String>,
    /// The settings pairs.
    settings: Vec<Pair>,
    /// The lines holding the settings, as written.
    written: String,
}

impl Parts {
    /// The parts of `text` (CRLF read as LF, trimmed); `None` when that leaves nothing.
    fn of(text: &str) -> Option<Parts> {
        let text = text.replace("\r\n", "\n");
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let lines: Vec<&str> = text.lines().collect();
        let (body, settings) = split_settings(&lines);
        let written = lines[body.len()..].join("\n");
        let mut prompt = Vec::new();
        let mut negative: Option<Vec<&str>> = None;
        for &line in body {
            match (&mut negative, line.strip_prefix("Negative prompt:")) {
                (None, Some(rest)) => negative = Some(vec![rest]),
                (Some(neg), _) => neg.push(line),
                (None, None) => prompt.push(line),
            }
        }
        Some(Parts {
            prompt: prompt.join("\n"),
            negative: negative.map(|n| n.join("\n")),
            settings,
            written,
        })
    }
}

/// One `Key: value` pair, its value unquoted.
struct Pair {
    key: String,
    value: String,
    quoted: bool,
    /// The value, when it is an unquoted JSON object or array.
    json: Option<Value>,
}

/// Splits the lines into the prompt part and the settings pairs.
fn split_settings<'a>(lines: &'a [&'a str]) -> (&'a [&'a str], Vec<Pair>) {
    let last = lines.len() - 1;
    if let Some(pairs) = settings_line(lines[last]) {
        let first_is_steps = pairs[0].key == "Steps";
        let negative = pairs[0].key == "Negative prompt";
        if !negative && ((pairs.len() >= 3 && lines.len() > 1) || first_is_steps) {
            return (&lines[..last], pairs);
        }
    }
    // Settings followed by single `Key: value` lines added by extensions.
    for at in (0..last).rev() {
        if !lines[at].starts_with("Steps:") {
            continue;
        }
        let Some(mut pairs) = settings_line(lines[at]) else {
            break;
        };
        for line in &lines[at + 1..] {
            match line.split_once(':') {
                Some((key, value)) if valid_key(key.trim()) => pairs.push(Pair {
                    key: key.trim().to_string(),
                    value: value.trim().to_string(),
                    quoted: false,
                    json: None,
                }),
                _ => return (lines, Vec::new()),
            }
        }
        return (&lines[..at], pairs);
    }
    (lines, Vec::new())
}

/// The pairs of a settings line, or `None` when it does not start with one.
fn settings_line(line: &str) -> Option<Vec<Pair>> {
    let mut pairs: Vec<Pair> = Vec::new();
    let mut rest = line.trim();
    let mut json_tries = 0;
    while !rest.is_empty() {
        let comma = rest.find(',').unwrap_or(rest.len());
        let key = rest[..comma]
            .split_once(':')
            .map(|(key, _)| key.trim())
            .filter(|key| valid_key(key));
        let Some(key) = key else {
            // A comma inside an unquoted value: it belongs to the previous pair.
            let last = pairs.last_mut().filter(|p| !p.quoted && p.json.is_none())?;
            last.value.push_str(", ");
            last.value.push_str(rest[..comma].trim());
            rest = rest[comma..].trim_start_matches(',').trim_start();
            continue;
        };
        let after = rest[rest.find(':')? + 1..].trim_start();
        let json = match after.starts_with(['{', '[']) && json_tries < MAX_JSON_VALUES {
            true => {
                json_tries += 1;
                json_value(after)
            }
            false => None,
        };
        if let Some((json, tail)) = json {
            pairs.push(Pair {
                key: key.to_string(),
                value: String::new(),
                quoted: false,
                json: Some(json),
            });
            rest = tail;
        } else if let Some((value, tail)) = quoted_value(after) {
            pairs.push(Pair {
                key: key.to_string(),
                value,
                quoted: true,
                json: None,
            });
            rest = tail;
        } else {
            let end = after.find(',').unwrap_or(after.len());
            pairs.push(Pair {
                key: key.to_string(),
                value: after[..end].trim().to_string(),
                quoted: false,
                json: None,
            });
            rest = after[end..].trim_start_matches(',').trim_start();
        }
    }
    (!pairs.is_empty()).then_some(pairs)
}

/// A JSON string at the start of `text` followed by a comma or the end: its value and the
/// text after the comma.
fn quoted_value(text: &str) -> Option<(String, &str)> {
    if !text.starts_with('"') {
        return None;
    }
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let tail = text[i + 1..].trim_start();
                if !(tail.is_empty() || tail.starts_with(',')) {
                    return None;
                }
                let raw = &text[..=i];
                let value = serde_json::from_str::<String>(raw)
                    .unwrap_or_else(|_| raw[1..raw.len() - 1].to_string());
                return Some((value, tail.trim_start_matches(',').trim_start()));
            }
            _ => {}
        }
    }
    None
}

/// An unquoted JSON object or array at the start of `text` followed by a comma or the end,
/// nested at most [`MAX_JSON_DEPTH`] deep: its value and the text after the comma. The
/// brackets are matched (strings skipped) before `serde_json` parses the slice, so the cost
/// stays linear in the line.
fn json_value(text: &str) -> Option<(Value, &str)> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'{' | b'[' if !in_string => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return None;
                }
            }
            b'}' | b']' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    let tail = text[i + 1..].trim_start();
                    if !(tail.is_empty() || tail.starts_with(',')) {
                        return None;
                    }
                    let value = serde_json::from_str(&text[..=i]).ok()?;
                    return Some((value, tail.trim_start_matches(',').trim_start()));
                }
            }
            _ => {}
        }
    }
    None
}

/// A settings key: starts with a letter or digit, then letters, digits, spaces and a little
/// punctuation (`Hires upscaler`, `ADetailer model 2nd`, `Schedule type`, `Lora hashes`).
fn valid_key(key: &str) -> bool {
    key.len() <= 64
        && key.chars().next().is_some_and(char::is_alphanumeric)
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || " -_/.()+".contains(c))
}

/// `CFG scale` -> `cfg_scale`.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

fn insert_setting(params: &mut Map<String, Value>, pair: Pair) {
    let key = snake_case(&pair.key);
    if key.is_empty() || params.contains_key(&key) {
        return;
    }
    if let Some(json) = pair.json {
        params.insert(key, json);
        return;
    }
    if key == "size" {
        if let Some((w, h)) = pair.value.split_once('x') {
            if let (Ok(w), Ok(h)) = (w.trim().parse::<u64>(), h.trim().parse::<u64>()) {
                params.entry("width").or_insert(w.into());
                params.entry("height").or_insert(h.into());
            }
        }
    }
    let value = if pair.quoted || STRING_KEYS.iter().any(|k| key.contains(k)) {
        Value::String(pair.value)
    } else {
        typed_value(pair.value)
    };
    params.insert(key, value);
}

/// A number when the text is one (no leading zeros, finite), `true`/`false`, else a string.
pub(super) fn typed_value(text: String) -> Value {
    let digits = text.strip_prefix('-').unwrap_or(&text);
    let plain_number = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && !digits.starts_with('.')
        && !digits.ends_with('.')
        && !(digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0."));
    if plain_number {
        if !digits.contains('.') {
            if let Ok(n) = text.parse::<i64>() {
                return Value::Number(n.into());
            }
            if let Ok(n) = text.parse::<u64>() {
                return Value::Number(n.into());
            }
        } else if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    match text.as_str() {
        "True" | "true" => Value::Bool(true),
        "False" | "false" => Value::Bool(false),
        _ => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infotext_fields_use_a1111_names_and_split_sizes() {
        let text = "a cat, \"quoted\"\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, \
                    CFG scale: 7, Seed: 42, Size: 512x768, Model hash: abc123, \
                    Lora hashes: \"a: 1, b: 2\", Hires resize: 1024x1536, Version: v1.10.1";
        let fields = infotext_fields(text);
        let field = |key: &str| {
            fields
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("<missing>")
        };
        assert_eq!(field("Prompt"), "a cat, \"quoted\"");
        assert_eq!(field("Negative prompt"), "blurry");
        assert_eq!(field("Steps"), "20");
        assert_eq!(field("Sampler"), "Euler a");
        assert_eq!(field("CFG scale"), "7");
        assert_eq!(field("Size-1"), "512");
        assert_eq!(field("Size-2"), "768");
        assert!(!fields.contains_key("Size"));
        assert_eq!(field("Hires resize-1"), "1024");
        assert_eq!(field("Lora hashes"), "a: 1, b: 2");
        assert_eq!(field("Version"), "v1.10.1");
        assert!(!fields.contains_key("Clip skip"), "no UI defaults");

        let bare = infotext_fields("just a prompt");
        assert_eq!(bare.len(), 2);
        assert_eq!(bare["Prompt"], "just a prompt");
        assert_eq!(bare["Negative prompt"], "");
        assert_eq!(infotext_fields("  ")["Prompt"], "");
        assert_eq!(image_size("12x"), None);
        assert_eq!(image_size("x12"), None);
        assert_eq!(image_size("1.5x2"), None);
    }

    #[test]
    fn typed_values() {
        assert_eq!(typed_value("20".into()), Value::from(20));
        assert_eq!(typed_value("-1".into()), Value::from(-1));
        assert_eq!(typed_value("4.500000".into()), Value::from(4.5));
        assert_eq!(
            typed_value("18446744073709551615".into()),
            Value::from(u64::MAX)
        );
        assert_eq!(typed_value("0123".into()), Value::from("0123"));
        assert_eq!(typed_value("1.2.3".into()), Value::from("1.2.3"));
        assert_eq!(typed_value("NaN".into()), Value::from("NaN"));
        assert_eq!(typed_value("inf".into()), Value::from("inf"));
        assert_eq!(typed_value("True".into()), Value::Bool(true));
        assert_eq!(typed_value("Euler a".into()), Value::from("Euler a"));
    }

    #[test]
    fn any_slice_of_tricky_text_parses_without_panic() {
        let text =
            "é cat: \"ü\", 猫\nNegative prompt: x\nSteps: \"a\\\", b: \", Size: 9x, Seed: 0.5.";
        for (start, _) in text.char_indices() {
            for (end, _) in text.char_indices().filter(|(e, _)| *e >= start) {
                let _ = parse_a1111_parameters(&text[start..end]);
            }
        }
        for odd in [
            ":",
            ",",
            "\"",
            "a: \"",
            "Steps:",
            "Steps: \"\\",
            ": x, : y, : z",
        ] {
            let _ = parse_a1111_parameters(odd);
        }
    }

    #[test]
    fn keys_become_snake_case() {
        assert_eq!(snake_case("CFG scale"), "cfg_scale");
        assert_eq!(snake_case("Model hash"), "model_hash");
        assert_eq!(snake_case("Hires upscale (by)"), "hires_upscale_by");
    }

    #[test]
    fn settings_line_rules() {
        assert!(settings_line("a cat, a dog").is_none());
        assert!(settings_line("<lora:x:1>, a cat").is_none());
        let pairs = settings_line(r#"Steps: 5, Note: "x, \"y\"", Seed: 1"#).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[1].value, r#"x, "y""#);
        let pairs = settings_line("Steps: 5, Extra: a, b, Seed: 1").unwrap();
        assert_eq!(pairs[1].value, "a, b");
    }
}
