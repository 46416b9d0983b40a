//! ComfyUI's `prompt` chunk: the API-format graph `{node_id: {class_type, inputs}}` that was
//! queued, where an input is a literal or a link `[node_id, output_index]`.
//!
//! The prompt is found from the sampler: the nodes with a `positive` input (`KSampler`,
//! `KSamplerAdvanced`, `CFGGuider`, ...), samplers first. Its `positive` (and `negative`) link
//! is followed back through pass-through nodes (conditioning combiners, ControlNet, area and
//! guidance nodes) to text encoders (`CLIPTextEncode`, `CLIPTextEncodeSDXL`, ...), whose text
//! may itself be a link to a string node. Settings (`seed`, `steps`, `cfg`, `sampler_name`,
//! `scheduler`, `denoise`, size, checkpoint) are taken from the sampler and the nodes it reads
//! from, nearest first.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

use super::{json_object, EmbeddedPrompt, Provenance};

type Graph = Map<String, Value>;

/// Deepest chain of nodes followed from a sampler.
const MAX_DEPTH: usize = 32;

/// Inputs that hold text, single or in pairs joined (SDXL, Flux, string concatenation).
const TEXT_KEYS: [&str; 5] = ["text", "prompt", "string", "value", "text_positive"];
const TEXT_PAIRS: [(&str, &str); 3] = [
    ("text_g", "text_l"),
    ("clip_l", "t5xxl"),
    ("string_a", "string_b"),
];

/// Settings read around the sampler: (input, parameter).
const SETTINGS: [(&str, &str); 11] = [
    ("seed", "seed"),
    ("noise_seed", "seed"),
    ("steps", "steps"),
    ("cfg", "cfg_scale"),
    ("sampler_name", "sampler"),
    ("scheduler", "scheduler"),
    ("denoise", "denoise"),
    ("width", "width"),
    ("height", "height"),
    ("ckpt_name", "model"),
    ("unet_name", "model"),
];

/// The prompt of the `prompt` chunk's JSON; `None` when no sampler leads to any text.
pub(super) fn parse_prompt_graph(text: &str) -> Result<Option<EmbeddedPrompt>, String> {
    Ok(parse_graph(&json_object(text, "ComfyUI prompt")?))
}

/// The prompt of an API-format graph; `None` when no sampler leads to any text.
fn parse_graph(graph: &Graph) -> Option<EmbeddedPrompt> {
    let mut samplers: Vec<(&String, &Map<String, Value>)> = graph
        .iter()
        .filter_map(|(id, node)| Some((id, node.as_object()?)))
        .filter(|(_, node)| inputs(node).is_some_and(|i| i.contains_key("positive")))
        .collect();
    samplers.sort_by(|(a, na), (b, nb)| {
        let key = |id: &str, node| {
            let number = id.parse::<u64>().unwrap_or(u64::MAX);
            (!class(node).contains("Sampler"), number)
        };
        key(a, na).cmp(&key(b, nb)).then_with(|| a.cmp(b))
    });
    for (id, node) in samplers {
        let positive = side_text(graph, node, "positive");
        let negative = side_text(graph, node, "negative");
        if positive.is_empty() && negative.is_empty() {
            continue;
        }
        let mut found =
            EmbeddedPrompt::new(Provenance::ComfyUi, positive).negative(Some(negative.as_str()));
        let mut roots = vec![id.as_str()];
        if !class(node).contains("Sampler") {
            // A guider is read by a sampler that holds the other settings.
            roots.extend(graph.iter().filter_map(|(other, n)| {
                let mut values = inputs(n.as_object()?)?.values();
                let links_here = values.any(|v| link(v).as_deref() == Some(id.as_str()));
                links_here.then_some(other.as_str())
            }));
        }
        gather_settings(graph, &roots, &mut found.parameters);
        return Some(found);
    }
    None
}

fn class(node: &Map<String, Value>) -> &str {
    node.get("class_type").and_then(Value::as_str).unwrap_or("")
}

fn inputs(node: &Map<String, Value>) -> Option<&Map<String, Value>> {
    node.get("inputs")?.as_object()
}

/// The node id of a link `[id, index]` (id as string or number).
fn link(value: &Value) -> Option<String> {
    let [id, index] = value.as_array()?.as_slice() else {
        return None;
    };
    index.as_u64()?;
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn node<'a>(graph: &'a Graph, id: &str) -> Option<&'a Map<String, Value>> {
    graph.get(id)?.as_object()
}

/// The text reaching `sampler`'s `side` input, the parts of combined conditionings joined.
fn side_text(graph: &Graph, sampler: &Map<String, Value>, side: &str) -> String {
    let mut texts = Vec::new();
    let mut seen = HashSet::new();
    match inputs(sampler).and_then(|i| i.get(side)) {
        Some(Value::String(text)) => texts.push(text.trim().to_string()),
        Some(value) => {
            if let Some(id) = link(value) {
                conditioning(graph, &id, side, 0, &mut seen, &mut texts);
            }
        }
        None => {}
    }
    let mut unique = Vec::new();
    for text in texts {
        if !text.is_empty() && !unique.contains(&text) {
            unique.push(text);
        }
    }
    unique.join(", ")
}

/// Collects the texts behind the conditioning output of node `id`.
fn conditioning(
    graph: &Graph,
    id: &str,
    side: &str,
    depth: usize,
    seen: &mut HashSet<String>,
    out: &mut Vec<String>,
) {
    if depth > MAX_DEPTH || !seen.insert(id.to_string()) {
        return;
    }
    let Some(node) = node(graph, id) else { return };
    let Some(inputs) = inputs(node) else { return };
    let class = class(node);
    if class.contains("ZeroOut") {
        return;
    }
    if class.contains("TextEncode") {
        out.extend(node_text(graph, node, depth + 1));
        return;
    }
    match inputs.get(side) {
        Some(Value::String(text)) => return out.push(text.trim().to_string()),
        Some(value) => {
            if let Some(next) = link(value) {
                return conditioning(graph, &next, side, depth + 1, seen, out);
            }
        }
        None => {}
    }
    let mut keys: Vec<&String> = inputs
        .keys()
        .filter(|k| k.contains("conditioning") || k.as_str() == "cond")
        .collect();
    keys.sort();
    let mut followed = false;
    for key in keys {
        if let Some(next) = link(&inputs[key]) {
            followed = true;
            conditioning(graph, &next, side, depth + 1, seen, out);
        }
    }
    if !followed {
        // An unknown encoder that holds its text in a usual input.
        out.extend(node_text(graph, node, depth + 1));
    }
}

/// The text a node holds or links to, if any.
fn node_text(graph: &Graph, node: &Map<String, Value>, depth: usize) -> Option<String> {
    let inputs = inputs(node)?;
    for key in TEXT_KEYS {
        if let Some(text) = inputs.get(key).and_then(|v| string_of(graph, v, depth)) {
            return Some(text);
        }
    }
    for (a, b) in TEXT_PAIRS {
        let a = inputs.get(a).and_then(|v| string_of(graph, v, depth));
        let b = inputs.get(b).and_then(|v| string_of(graph, v, depth));
        let delimiter = inputs
            .get("delimiter")
            .and_then(Value::as_str)
            .unwrap_or(", ");
        match (a, b) {
            (Some(a), Some(b)) if a.trim() == b.trim() || b.trim().is_empty() => return Some(a),
            (Some(a), Some(b)) if a.trim().is_empty() => return Some(b),
            (Some(a), Some(b)) => return Some(format!("{a}{delimiter}{b}")),
            (Some(one), None) | (None, Some(one)) => return Some(one),
            (None, None) => {}
        }
    }
    None
}

/// A literal string, or the text of the node a link points to.
fn string_of(graph: &Graph, value: &Value, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::String(text) => Some(text.clone()),
        _ => node_text(graph, node(graph, &link(value)?)?, depth + 1),
    }
}

/// Fills the settings from the `roots` and the nodes they read from, breadth first (nearest
/// wins), never crossing into the conditioning (text) side.
fn gather_settings(graph: &Graph, roots: &[&str], params: &mut Map<String, Value>) {
    let mut queue: VecDeque<(String, usize)> = roots.iter().map(|r| (r.to_string(), 0)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some((id, depth)) = queue.pop_front() {
        if depth > MAX_DEPTH || !seen.insert(id.clone()) {
            continue;
        }
        let Some(inputs) = node(graph, &id).and_then(inputs) else {
            continue;
        };
        for (input, key) in SETTINGS {
            match inputs.get(input) {
                Some(v @ (Value::Number(_) | Value::String(_))) => {
                    params.entry(key).or_insert(v.clone());
                }
                Some(v) => {
                    // A setting fed by a primitive node: its first scalar input.
                    let target =
                        link(v).and_then(|n| node(graph, &n).and_then(self::inputs).cloned());
                    let scalar = target.and_then(|t| {
                        t.get(input)
                            .or_else(|| t.values().find(|v| v.is_number()))
                            .cloned()
                    });
                    if let Some(s) = scalar.filter(|s| s.is_number() || s.is_string()) {
                        params.entry(key).or_insert(s);
                    }
                }
                None => {}
            }
        }
        for (name, value) in inputs {
            let text_side =
                matches!(name.as_str(), "positive" | "negative") || name.contains("conditioning");
            if let (false, Some(next)) = (text_side, link(value)) {
                queue.push_back((next, depth + 1));
            }
        }
    }
    if let (Some(Value::Number(w)), Some(Value::Number(h))) =
        (params.get("width"), params.get("height"))
    {
        let size = format!("{w}x{h}");
        params.entry("size").or_insert(size.into());
    }
}
