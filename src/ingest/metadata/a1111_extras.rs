//! The structured settings A1111 and its extensions append to the settings line, read into
//! JSON values beside the text they came from:
//!
//! - `Lora hashes: "name: hash, name: hash"` (the built-in Lora extension,
//!   `extensions-builtin/Lora/scripts/lora_script.py`) and `TI hashes: "name: hash, ..."`
//!   (`modules/processing.py`, textual-inversion embeddings): the quoted string is kept as
//!   `lora_hashes` / `ti_hashes`, and its pairs become the objects `loras` / `embeddings`.
//! - `Hashes: {"model": "...", "lora:name": "...", "embed:name": "..."}` (the Civitai
//!   extension appends `json.dumps` of its hashes unquoted): the object `hashes`, string
//!   values only.
//! - `Civitai resources: [{"type": "checkpoint", "modelVersionId": 290640, "weight": 0.8}]`
//!   (Civitai's generator, unquoted JSON): the array `civitai_resources`, each entry reduced to
//!   `type` (a string; any other value, or none, becomes `"unknown"`), `modelVersionId` (an
//!   integer; entries without one are dropped) and `weight` (a number, when given).
//!
//! Every structure is bounded: at most [`MAX_ENTRIES`] entries, names and hashes at most
//! [`MAX_NAME_BYTES`] each; whatever is over is left out, never an error.

use serde_json::{Map, Value};

/// Most entries read into one structure (real infotexts list a handful).
pub(super) const MAX_ENTRIES: usize = 256;

/// Longest name or hash kept in a structure.
pub(super) const MAX_NAME_BYTES: usize = 256;

/// Adds the structures derived from the settings already in `params` (see the module
/// documentation); keys already present are kept.
pub(super) fn add_extras(params: &mut Map<String, Value>) {
    let derived = [("lora_hashes", "loras"), ("ti_hashes", "embeddings")];
    for (source, target) in derived {
        if let Some(Value::String(text)) = params.get(source) {
            let pairs = name_hash_pairs(text);
            if !pairs.is_empty() && !params.contains_key(target) {
                params.insert(target.to_string(), Value::Object(pairs));
            }
        }
    }
    if let Some(hashes) = params.get("hashes").map(hashes_object) {
        match hashes {
            Some(object) => params.insert("hashes".into(), Value::Object(object)),
            None => params.remove("hashes"),
        };
    }
    if let Some(resources) = params.get("civitai_resources").map(civitai_resources) {
        match resources {
            Some(list) => params.insert("civitai_resources".into(), Value::Array(list)),
            None => params.remove("civitai_resources"),
        };
    }
}

/// `"a: 1, b: 2"` as `{"a": "1", "b": "2"}`; pieces without a colon are skipped. The name
/// is what comes before the last colon (names may hold colons, hashes never do).
fn name_hash_pairs(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for piece in text.split(',').take(MAX_ENTRIES) {
        let Some((name, hash)) = piece.rsplit_once(':') else {
            continue;
        };
        let (name, hash) = (name.trim(), hash.trim());
        if name.is_empty() || name.len() > MAX_NAME_BYTES || hash.len() > MAX_NAME_BYTES {
            continue;
        }
        out.entry(name).or_insert_with(|| hash.into());
    }
    out
}

/// The `Hashes` object with its string members; `None` when the value is no object (a string
/// that is JSON is parsed first).
fn hashes_object(value: &Value) -> Option<Map<String, Value>> {
    let parsed;
    let object = match value {
        Value::Object(object) => object,
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            parsed.as_object()?
        }
        _ => return None,
    };
    let kept: Map<String, Value> = object
        .iter()
        .filter(|(k, v)| k.len() <= MAX_NAME_BYTES && v.as_str().is_some_and(short))
        .take(MAX_ENTRIES)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

fn short(text: &str) -> bool {
    text.len() <= MAX_NAME_BYTES
}

/// The Civitai resources list, normalised; `None` when the value is no array or no entry has
/// a model version id.
fn civitai_resources(value: &Value) -> Option<Vec<Value>> {
    let parsed;
    let list = match value {
        Value::Array(list) => list,
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            parsed.as_array()?
        }
        _ => return None,
    };
    let kept: Vec<Value> = list
        .iter()
        .filter_map(Value::as_object)
        .filter_map(civitai_resource)
        .take(MAX_ENTRIES)
        .collect();
    (!kept.is_empty()).then_some(kept)
}

fn civitai_resource(entry: &Map<String, Value>) -> Option<Value> {
    let id = entry.get("modelVersionId")?;
    let id = id
        .as_u64()
        .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()))?;
    let kind = entry
        .get("type")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty() && short(t))
        .unwrap_or("unknown");
    let mut out = Map::new();
    out.insert("type".into(), kind.into());
    out.insert("modelVersionId".into(), id.into());
    if let Some(weight) = entry.get("weight").filter(|w| w.is_number()) {
        out.insert("weight".into(), weight.clone());
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extras(params: Value) -> Value {
        let mut map = params.as_object().unwrap().clone();
        add_extras(&mut map);
        Value::Object(map)
    }

    #[test]
    fn name_hash_lists_become_objects_and_keep_their_text() {
        let out = extras(json!({
            "lora_hashes": "add_detail: 7c6bad76eb54, style:v2: 0011",
            "ti_hashes": "easynegative: c74b4e810b03, broken, : x"
        }));
        assert_eq!(
            out["loras"],
            json!({"add_detail": "7c6bad76eb54", "style:v2": "0011"})
        );
        assert_eq!(out["embeddings"], json!({"easynegative": "c74b4e810b03"}));
        assert_eq!(
            out["lora_hashes"],
            json!("add_detail: 7c6bad76eb54, style:v2: 0011")
        );
    }

    #[test]
    fn hashes_keep_string_members_only() {
        let out = extras(json!({"hashes": {"model": "abc", "n": 1, "lora:x": "def"}}));
        assert_eq!(out["hashes"], json!({"model": "abc", "lora:x": "def"}));
        let out = extras(json!({"hashes": "{\"vae\": \"c6a5\"}"}));
        assert_eq!(out["hashes"], json!({"vae": "c6a5"}));
        let out = extras(json!({"hashes": "not json", "steps": 2}));
        assert_eq!(out, json!({"steps": 2}));
    }

    #[test]
    fn civitai_resources_tolerate_junk_types() {
        let out = extras(json!({"civitai_resources": [
            {"type": "checkpoint", "modelVersionId": 290640},
            {"type": 7, "modelVersionId": "12", "weight": 0.6, "extra": "x"},
            {"type": "lora"},
            "junk",
            {"modelVersionId": -1}
        ]}));
        assert_eq!(
            out["civitai_resources"],
            json!([
                {"type": "checkpoint", "modelVersionId": 290640},
                {"type": "unknown", "modelVersionId": 12, "weight": 0.6}
            ])
        );
        let out = extras(json!({"civitai_resources": [{"type": "lora"}]}));
        assert!(out.get("civitai_resources").is_none());
    }

    #[test]
    fn structures_are_bounded() {
        let many: Vec<String> = (0..1000).map(|i| format!("n{i}: h{i}")).collect();
        let out = extras(json!({"lora_hashes": many.join(", ")}));
        assert_eq!(out["loras"].as_object().unwrap().len(), MAX_ENTRIES);
        let long = format!("{}: h", "x".repeat(MAX_NAME_BYTES + 1));
        let out = extras(json!({"lora_hashes": long}));
        assert!(out.get("loras").is_none());
    }
}
