//! The settings map of a prompt: JSON objects parsed, their scalars copied under promptdex's
//! names, and `size` derived from `width` and `height`.

use serde_json::{Map, Value};

/// Copies the scalar members of a JSON object (numbers, strings, booleans) into `out`,
/// skipping `skip` and renaming per `rename`; a key already in `out` is kept.
pub(super) fn copy_scalars(
    src: &Map<String, Value>,
    out: &mut Map<String, Value>,
    skip: &[&str],
    rename: &[(&str, &str)],
) {
    for (key, value) in src {
        if skip.contains(&key.as_str()) || !is_scalar(value) {
            continue;
        }
        let key = rename
            .iter()
            .find(|(from, _)| from == key)
            .map_or(key.as_str(), |(_, to)| to);
        if !out.contains_key(key) {
            out.insert(key.to_string(), value.clone());
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::Number(_) | Value::Bool(_))
        || value.as_str().is_some_and(|s| !s.is_empty())
}

/// Makes numbers of the `keys` of `params` whose values are strings that read as numbers
/// (`"12345"`, `" 7.5"`), as writers that store every setting as text leave them.
pub(super) fn numbers_from_strings(params: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(Value::String(text)) = params.get(*key) {
            let typed = super::a1111::typed_value(text.trim().to_string());
            if typed.is_number() {
                params.insert(key.to_string(), typed);
            }
        }
    }
}

/// Parses `text` as a JSON object, naming `what` in the error.
pub(super) fn json_object(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("{what} is JSON but not an object")),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

/// `WxH` when `params` holds `width` and `height` as numbers, as the `size` setting.
pub(super) fn size_of(params: &Map<String, Value>) -> Option<Value> {
    match (params.get("width"), params.get("height")) {
        (Some(Value::Number(w)), Some(Value::Number(h))) => Some(format!("{w}x{h}").into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn size_needs_two_numbers() {
        let size = |v| size_of(&map(v));
        assert_eq!(
            size(json!({"width": 512, "height": 768})),
            Some("512x768".into())
        );
        assert_eq!(
            size(json!({"width": 512.5, "height": 2})),
            Some("512.5x2".into())
        );
        assert_eq!(size(json!({"width": "512", "height": 768})), None);
        assert_eq!(size(json!({"width": 512})), None);
    }

    #[test]
    fn scalars_are_copied_renamed_and_never_replace() {
        let src = map(json!({"scale": 7, "uc": "bad", "empty": "", "list": [1], "seed": 1}));
        let mut out = map(json!({"seed": 2}));
        copy_scalars(&src, &mut out, &["uc"], &[("scale", "cfg_scale")]);
        assert_eq!(Value::Object(out), json!({"seed": 2, "cfg_scale": 7}));
    }
}
