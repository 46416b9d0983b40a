//! ComfyUI's `workflow` chunk, used when there is no `prompt` graph: the editor's own format,
//! `{nodes: [{id, type, title, inputs: [{name, type, link}], widgets_values}], links}` where
//! a link is `[id, origin_id, origin_slot, target_id, target_slot, type]` (or an object with
//! the same names in newer versions).
//!
//! The sampler's `positive` / `negative` inputs (or its guider's) are followed back through
//! pass-through nodes (reroutes, any input of type `CONDITIONING`) to text encoders, as for
//! the API graph in `comfy`. An encoder's text is its text widget alone: the widget at the
//! known position for the common encoders, else its first string widget that is not a model
//! file, or the text of the node a text input is linked to. Without a sampler, text encoders
//! are read in id order, the one titled "negative" giving the negative prompt. The walk visits
//! each node once per side and spends the file's step budget like the API graph's.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::comfy::{
    is_conditioning_input, join_texts, sampler_prompt, too_complex, Side, MAX_DEPTH, TEXT_GROUPS,
    TEXT_KEYS,
};
use super::params::json_object;
use super::{EmbeddedPrompt, Provenance, Scan};

type Detail = String;
type Node = Map<String, Value>;

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

/// Where the text widgets of the common encoders are in `widgets_values`; the other widgets
/// are sizes, model names and modes.
const ENCODER_WIDGETS: [(&str, &[usize]); 13] = [
    ("CLIPTextEncode", &[0]),
    ("CLIPTextEncodeSDXL", &[6, 7]),
    ("CLIPTextEncodeSDXLRefiner", &[3]),
    ("CLIPTextEncodeFlux", &[0, 1]),
    ("CLIPTextEncodeSD3", &[0, 1, 2]),
    ("CLIPTextEncodeHunyuanDiT", &[0, 1]),
    ("CLIPTextEncodeLumina2", &[1]),
    ("CLIPTextEncodePixArtAlpha", &[2]),
    ("TextEncodeHunyuanVideo_ImageToVideo", &[0]),
    ("BNK_CLIPTextEncodeAdvanced", &[0]),
    ("CLIPTextEncodeAdvanced", &[0]),
    ("smZ CLIPTextEncode", &[0]),
    ("ImpactWildcardEncode", &[1, 0]),
];

/// File endings of model names, which are never prompt text.
const MODEL_FILES: [&str; 9] = [
    ".safetensors",
    ".ckpt",
    ".pt",
    ".pth",
    ".bin",
    ".gguf",
    ".sft",
    ".onnx",
    ".yaml",
];

struct Workflow<'a> {
    nodes: HashMap<String, &'a Node>,
    /// Link id -> (origin node id, origin slot).
    links: HashMap<String, (String, u64)>,
}

/// One walk over a workflow.
struct Walk<'w, 'a, 's> {
    flow: &'w Workflow<'a>,
    scan: &'s mut Scan,
    /// The text of each node read as text, once computed (`None` while being computed).
    texts: HashMap<String, Option<String>>,
}

/// The prompt of a UI-format workflow; `None` when it has no text encoder with text. A
/// workflow that spends the file's step budget is an error.
pub(super) fn parse_workflow(
    text: &str,
    scan: &mut Scan,
) -> Result<Option<EmbeddedPrompt>, Detail> {
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
        let (id, origin, slot) = match link {
            Value::Array(parts) if parts.len() >= 2 => (
                id_string(&parts[0]),
                id_string(&parts[1]),
                parts.get(2).and_then(Value::as_u64),
            ),
            Value::Object(o) => (
                o.get("id").and_then(id_string),
                o.get("origin_id").and_then(id_string),
                o.get("origin_slot").and_then(Value::as_u64),
            ),
            _ => continue,
        };
        if let (Some(id), Some(origin)) = (id, origin) {
            flow.links.insert(id, (origin, slot.unwrap_or(0)));
        }
    }
    let mut walk = Walk {
        flow: &flow,
        scan,
        texts: HashMap::new(),
    };
    let found = walk.prompt();
    match walk.scan.exhausted() {
        true => Err(too_complex()),
        false => Ok(found),
    }
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

fn node_id(node: &Node) -> String {
    node.get("id").and_then(id_string).unwrap_or_default()
}

/// The inputs of a node: (name, type, link id).
fn node_inputs(node: &Node) -> impl Iterator<Item = (&str, &str, Option<String>)> {
    node.get("inputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|input| {
            let name = input.get("name")?.as_str()?;
            let kind = input.get("type").and_then(Value::as_str).unwrap_or("");
            Some((name, kind, input.get("link").and_then(id_string)))
        })
}

/// Whether a widget value is a model file name rather than text.
fn is_model_file(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    MODEL_FILES.iter().any(|ext| lower.ends_with(ext))
}

/// The text widgets of an encoder: at their known positions, else its first string widget
/// that is not a model name.
fn encoder_widgets(node: &Node) -> Vec<String> {
    match node.get("widgets_values") {
        Some(Value::Array(values)) => {
            let known = ENCODER_WIDGETS.iter().find(|(t, _)| *t == node_type(node));
            match known {
                Some((_, at)) => at
                    .iter()
                    .filter_map(|&i| values.get(i)?.as_str())
                    .map(str::to_string)
                    .collect(),
                None => values
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|s| !is_model_file(s))
                    .map(str::to_string)
                    .into_iter()
                    .collect(),
            }
        }
        Some(Value::Object(values)) => TEXT_KEYS
            .iter()
            .chain(TEXT_GROUPS.iter().flat_map(|g| g.iter()))
            .filter_map(|k| values.get(*k)?.as_str())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether an input name is one that holds text.
fn is_text_input(name: &str) -> bool {
    TEXT_KEYS.contains(&name) || TEXT_GROUPS.iter().any(|g| g.contains(&name))
}

impl<'a> Workflow<'a> {
    /// The origin node and slot of link `link`.
    fn origin(&self, link: &str) -> Option<(&'a Node, u64)> {
        let (origin, slot) = self.links.get(link)?;
        Some((*self.nodes.get(origin)?, *slot))
    }

    /// The node and slot linked to input `name` of `node`.
    fn input_link(&self, node: &Node, name: &str) -> Option<(&'a Node, u64)> {
        let (_, _, link) = node_inputs(node).find(|(n, _, _)| *n == name)?;
        self.origin(&link?)
    }
}

impl<'a> Walk<'_, 'a, '_> {
    fn prompt(&mut self) -> Option<EmbeddedPrompt> {
        let flow = self.flow;
        let mut ids: Vec<&String> = flow.nodes.keys().collect();
        ids.sort_by(|a, b| {
            let number = |id: &str| id.parse::<u64>().unwrap_or(u64::MAX);
            number(a).cmp(&number(b)).then_with(|| a.cmp(b))
        });
        let mut samplers: Vec<&String> = ids
            .iter()
            .copied()
            .filter(|id| {
                let node = flow.nodes[*id];
                let kind = node_type(node);
                kind.contains("Sampler")
                    || kind.contains("Guider")
                    || flow.input_link(node, "positive").is_some()
            })
            .collect();
        samplers.sort_by_key(|id| !node_type(flow.nodes[*id]).contains("Sampler"));
        for id in samplers {
            let sampler = flow.nodes[id];
            let found = sampler_prompt(Provenance::ComfyUiWorkflow, |side, seen, out| {
                self.sampler_side(sampler, side, 0, seen, out)
            });
            if self.scan.exhausted() {
                return None;
            }
            let Some(mut found) = found else {
                continue;
            };
            sampler_settings(sampler, &mut found.parameters);
            return Some(found);
        }
        self.encoders_alone(&ids)
    }

    /// No sampler wired to text: the encoders themselves, in id order.
    fn encoders_alone(&mut self, ids: &[&String]) -> Option<EmbeddedPrompt> {
        let (mut positive, mut negative) = (None, None);
        for id in ids {
            let node = self.flow.nodes[*id];
            if !node_type(node).contains("TextEncode") {
                continue;
            }
            let Some(text) = self.encoder_text(node, 0).filter(|t| !t.trim().is_empty()) else {
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
        found.has_text().then_some(found)
    }

    /// Collects the texts of `side` for a sampler or guider, following a `guider` link.
    fn sampler_side(
        &mut self,
        node: &'a Node,
        side: Side,
        depth: usize,
        seen: &mut HashSet<(String, Side)>,
        out: &mut Vec<String>,
    ) {
        let flow = self.flow;
        if depth > MAX_DEPTH {
            return;
        }
        let mut any = false;
        for name in side.inputs(node_type(node)) {
            if let Some((origin, slot)) = flow.input_link(node, name) {
                any = true;
                self.conditioning(origin, slot, side, depth + 1, seen, out);
            }
        }
        if any {
            return;
        }
        if let Some((guider, _)) = flow.input_link(node, "guider") {
            if self.scan.step() && seen.insert((node_id(guider), side)) {
                self.sampler_side(guider, side, depth + 1, seen, out);
            }
        }
    }

    fn conditioning(
        &mut self,
        node: &'a Node,
        slot: u64,
        side: Side,
        depth: usize,
        seen: &mut HashSet<(String, Side)>,
        out: &mut Vec<String>,
    ) {
        let flow = self.flow;
        let kind = node_type(node);
        if depth > MAX_DEPTH
            || !self.scan.step()
            || !seen.insert((node_id(node), side))
            || kind.contains("ZeroOut")
        {
            return;
        }
        if kind.contains("TextEncode") {
            out.extend(self.encoder_text(node, depth + 1));
            return;
        }
        let has = |name: &str| node_inputs(node).any(|(n, _, _)| n == name);
        let side = match has("positive") && has("negative") {
            true => side.of_slot(slot),
            false => side,
        };
        if let Some((origin, slot)) = flow.input_link(node, side.name()) {
            return self.conditioning(origin, slot, side, depth + 1, seen, out);
        }
        let reroute = kind.contains("Reroute");
        let links: Vec<String> = node_inputs(node)
            .filter(|(name, kind, _)| {
                reroute || *kind == "CONDITIONING" || is_conditioning_input(name)
            })
            .filter_map(|(_, _, link)| link)
            .collect();
        let mut followed = false;
        for link in links {
            if let Some((origin, slot)) = flow.origin(&link) {
                followed = true;
                self.conditioning(origin, slot, side, depth + 1, seen, out);
            }
        }
        if !followed {
            out.extend(self.encoder_text(node, depth + 1));
        }
    }

    /// An encoder's text: its text inputs linked from other nodes, else its text widgets.
    fn encoder_text(&mut self, node: &'a Node, depth: usize) -> Option<String> {
        let flow = self.flow;
        let linked: Vec<&'a Node> = node_inputs(node)
            .filter(|(name, _, _)| is_text_input(name))
            .filter_map(|(_, _, link)| Some(flow.origin(&link?)?.0))
            .collect();
        let mut parts: Vec<String> = Vec::new();
        for origin in linked {
            parts.extend(self.text_node(origin, depth + 1));
        }
        if parts.is_empty() {
            parts = encoder_widgets(node);
            if node_type(node) == "ImpactWildcardEncode" {
                // The populated text when there is one, else the wildcard text.
                parts.retain(|p| !p.trim().is_empty());
                parts.truncate(1);
            }
        }
        let text = join_texts(parts, ", ");
        (!text.is_empty()).then_some(text)
    }

    /// The text a node (a primitive, a string node) gives, computed once: the texts linked
    /// into it, else its first string widget.
    fn text_node(&mut self, node: &'a Node, depth: usize) -> Option<String> {
        let id = node_id(node);
        if let Some(known) = self.texts.get(&id) {
            return known.clone();
        }
        if depth > MAX_DEPTH || !self.scan.step() {
            return None;
        }
        self.texts.insert(id.clone(), None);
        let flow = self.flow;
        let linked: Vec<&'a Node> = node_inputs(node)
            .filter(|(name, kind, _)| *kind == "STRING" || is_text_input(name))
            .filter_map(|(_, _, link)| Some(flow.origin(&link?)?.0))
            .collect();
        let mut parts = Vec::new();
        for origin in linked {
            parts.extend(self.text_node(origin, depth + 1));
        }
        if parts.is_empty() {
            let widgets = node.get("widgets_values").and_then(Value::as_array);
            let first = widgets.and_then(|w| w.iter().find_map(Value::as_str));
            parts.extend(first.filter(|s| !is_model_file(s)).map(str::to_string));
        }
        let text = Some(join_texts(parts, ", ")).filter(|t| !t.is_empty());
        self.texts.insert(id, text.clone());
        text
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
