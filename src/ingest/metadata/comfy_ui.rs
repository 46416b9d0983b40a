//! ComfyUI's `workflow` chunk, used when there is no `prompt` graph: the editor's own format,
//! `{nodes: [{id, type, title, inputs: [{name, link}], widgets_values}], links}` where a link
//! is `[id, origin_id, origin_slot, target_id, target_slot, type]` (or an object with the same
//! names in newer versions).
//!
//! Best effort: the sampler's `positive` / `negative` inputs are followed back to text
//! encoders, whose text is their string widgets (or the primitive node a text input is linked
//! to). Without a sampler, text encoders are read in id order, the one titled "negative"
//! giving the negative prompt.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{json_object, EmbeddedPrompt, Provenance};

type Detail = String;
type Node = Map<String, Value>;

const MAX_DEPTH: usize = 32;

/// KSampler widget order: (index, parameter), for `KSampler` and `KSamplerAdvanced`.
const KSAMPLER: [(usize, &str); 5] = [
    (0, "seed"),
    (2, "steps"),
    (3, "cfg_scale"),
    (4, "sampler"),
    (5, "scheduler"),
];
const KSAMPLER_ADVANCED: [(usize, &str); 5] = [
    (1, "seed"),
    (3, "steps"),
    (4, "cfg_scale"),
    (5, "sampler"),
    (6, "scheduler"),
];

struct Workflow<'a> {
    nodes: HashMap<String, &'a Node>,
    /// Link id -> origin node id.
    links: HashMap<String, String>,
}

/// The prompt of a UI-format workflow; `None` when it has no text encoder with text.
pub(super) fn parse_workflow(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    let obj = json_object(text, "ComfyUI workflow")?;
    let Some(list) = obj.get("nodes").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut flow = Workflow {
        nodes: HashMap::new(),
        links: HashMap::new(),
    };
    for node in list.iter().filter_map(Value::as_object) {
        if let Some(id) = node.get("id").and_then(id_string) {
            flow.nodes.insert(id, node);
        }
    }
    for link in obj
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (id, origin) = match link {
            Value::Array(parts) if parts.len() >= 2 => (id_string(&parts[0]), id_string(&parts[1])),
            Value::Object(o) => (
                o.get("id").and_then(id_string),
                o.get("origin_id").and_then(id_string),
            ),
            _ => continue,
        };
        if let (Some(id), Some(origin)) = (id, origin) {
            flow.links.insert(id, origin);
        }
    }
    let mut ids: Vec<&String> = flow.nodes.keys().collect();
    ids.sort_by(|a, b| {
        let number = |id: &str| id.parse::<u64>().unwrap_or(u64::MAX);
        number(a).cmp(&number(b)).then_with(|| a.cmp(b))
    });
    let mut samplers: Vec<&String> = ids
        .iter()
        .copied()
        .filter(|id| flow.input_link(flow.nodes[*id], "positive").is_some())
        .collect();
    samplers.sort_by_key(|id| !node_type(flow.nodes[*id]).contains("Sampler"));
    for id in samplers {
        let sampler = flow.nodes[id];
        let positive = flow.side_text(sampler, "positive");
        let negative = flow.side_text(sampler, "negative");
        if positive.is_empty() && negative.is_empty() {
            continue;
        }
        let mut found = EmbeddedPrompt::new(Provenance::ComfyUiWorkflow, positive)
            .negative(Some(negative.as_str()));
        sampler_settings(sampler, &mut found.parameters);
        return Ok(Some(found));
    }
    // No sampler wired to text: the encoders themselves.
    let (mut positive, mut negative) = (None, None);
    for id in ids {
        let node = flow.nodes[id];
        if !node_type(node).contains("TextEncode") {
            continue;
        }
        let Some(text) = flow.encoder_text(node).filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        let title = node
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        let slot = if title.contains("neg") {
            &mut negative
        } else {
            &mut positive
        };
        slot.get_or_insert(text);
    }
    let found = EmbeddedPrompt::new(Provenance::ComfyUiWorkflow, positive.unwrap_or_default())
        .negative(negative.as_deref());
    Ok(found.has_text().then_some(found))
}

fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn node_type(node: &Node) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The string widget values of a node, in order.
fn widget_strings(node: &Node) -> Vec<&str> {
    match node.get("widgets_values") {
        Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
        Some(Value::Object(values)) => values
            .iter()
            .filter(|(k, _)| k.contains("text") || k.contains("prompt"))
            .filter_map(|(_, v)| v.as_str())
            .collect(),
        _ => Vec::new(),
    }
}

impl Workflow<'_> {
    /// The node linked to input `name` of `node`.
    fn input_link(&self, node: &Node, name: &str) -> Option<&Node> {
        let inputs = node.get("inputs")?.as_array()?;
        let input = inputs
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some(name))?;
        let origin = self.links.get(&id_string(input.get("link")?)?)?;
        self.nodes.get(origin).copied()
    }

    fn side_text(&self, sampler: &Node, side: &str) -> String {
        let mut out = Vec::new();
        if let Some(origin) = self.input_link(sampler, side) {
            self.conditioning(origin, side, 0, &mut HashSet::new(), &mut out);
        }
        let mut unique: Vec<String> = Vec::new();
        for text in out.into_iter().map(|t| t.trim().to_string()) {
            if !text.is_empty() && !unique.contains(&text) {
                unique.push(text);
            }
        }
        unique.join(", ")
    }

    fn conditioning(
        &self,
        node: &Node,
        side: &str,
        depth: usize,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) {
        let id = node.get("id").and_then(id_string).unwrap_or_default();
        if depth > MAX_DEPTH || !seen.insert(id) || node_type(node).contains("ZeroOut") {
            return;
        }
        if node_type(node).contains("TextEncode") {
            out.extend(self.encoder_text(node));
            return;
        }
        if let Some(origin) = self.input_link(node, side) {
            return self.conditioning(origin, side, depth + 1, seen, out);
        }
        let names: Vec<&str> = node
            .get("inputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("name")?.as_str())
            .filter(|n| n.contains("conditioning"))
            .collect();
        let mut followed = false;
        for name in names {
            if let Some(origin) = self.input_link(node, name) {
                followed = true;
                self.conditioning(origin, side, depth + 1, seen, out);
            }
        }
        if !followed {
            out.extend(self.encoder_text(node));
        }
    }

    /// An encoder's text: inputs linked from primitive nodes, else its string widgets.
    fn encoder_text(&self, node: &Node) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        for name in ["text", "text_g", "text_l", "clip_l", "t5xxl"] {
            if let Some(origin) = self.input_link(node, name) {
                parts.extend(widget_strings(origin).first().map(|s| s.to_string()));
            }
        }
        if parts.is_empty() {
            parts = widget_strings(node)
                .into_iter()
                .map(str::to_string)
                .collect();
        }
        parts.retain(|p| !p.trim().is_empty());
        parts.dedup();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Seed, steps, CFG, sampler and scheduler from a KSampler's widgets.
fn sampler_settings(sampler: &Node, params: &mut Map<String, Value>) {
    let order: &[(usize, &str)] = match node_type(sampler) {
        "KSampler" => &KSAMPLER,
        "KSamplerAdvanced" => &KSAMPLER_ADVANCED,
        _ => return,
    };
    let Some(values) = sampler.get("widgets_values").and_then(Value::as_array) else {
        return;
    };
    for &(index, key) in order {
        let expect_text = matches!(key, "sampler" | "scheduler");
        if let Some(v) = values.get(index).filter(|v| {
            if expect_text {
                v.is_string()
            } else {
                v.is_number()
            }
        }) {
            params.insert(key.to_string(), v.clone());
        }
    }
}
