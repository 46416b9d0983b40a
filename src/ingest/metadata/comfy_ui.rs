//! ComfyUI's `workflow` chunk, used when there is no `prompt` graph: the editor's own format,
//! `{nodes: [{id, type, title, inputs: [{name, type, link}], widgets_values}], links,
//! definitions: {subgraphs}}` where a link is `[id, origin_id, origin_slot, target_id,
//! target_slot, type]` (or an object with the same names in newer versions), and subgraphs are
//! expanded as `comfy_subgraph` describes.
//!
//! The sampler's `positive` / `negative` inputs (or its guider's) are followed back through
//! pass-through nodes (reroutes, any input of type `CONDITIONING`) and subgraph boundaries to
//! text encoders, as for the API graph in `comfy`. An encoder's text is its text widget alone:
//! the text its text inputs are linked to (a primitive or string node, a widget promoted onto a
//! subgraph instance), else a value promoted onto it, else the widget at the known position
//! for the common encoders, else its first string widget that is not a model file. Samplers are
//! looked for in the workflow's own graph first, then in its subgraphs, outer ones first.
//! Without a sampler, text encoders are read in that order, the one titled "negative" giving
//! the negative prompt. The walk visits each node once per side and spends the file's step
//! budget like the API graph's; settings are read by `comfy_ui_settings`.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::comfy::{
    is_conditioning_input, join_texts, sampler_prompt, too_complex, Side, MAX_DEPTH, TEXT_GROUPS,
    TEXT_KEYS,
};
use super::comfy_subgraph::{
    node_inputs, node_type, At, Expansion, Node, NodeKey, Source, Workflow,
};
use super::comfy_ui_settings::gather_settings;
use super::params::json_object;
use super::{EmbeddedPrompt, Provenance, Scan};

type Detail = String;

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

/// One walk over a workflow.
pub(super) struct Walk<'w, 'a, 's> {
    pub(super) graph: Expansion<'w, 'a>,
    pub(super) scan: &'s mut Scan,
    /// The text of each node read as text, once computed (`None` while being computed).
    texts: HashMap<NodeKey, Option<String>>,
}

/// The prompt of a UI-format workflow; `None` when it has no text encoder with text. A
/// workflow that spends the file's step budget is an error.
pub(super) fn parse_workflow(
    text: &str,
    scan: &mut Scan,
) -> Result<Option<EmbeddedPrompt>, Detail> {
    let obj = json_object(text, "ComfyUI workflow")?;
    if !obj.get("nodes").is_some_and(Value::is_array) {
        return Ok(None);
    }
    let flow = Workflow::new(&obj);
    let mut walk = Walk {
        graph: Expansion::new(&flow),
        scan,
        texts: HashMap::new(),
    };
    let found = walk.prompt();
    match walk.scan.exhausted() {
        true => Err(too_complex()),
        false => Ok(found),
    }
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

impl<'a> Walk<'_, 'a, '_> {
    fn prompt(&mut self) -> Option<EmbeddedPrompt> {
        let frames = self.graph.all_frames(self.scan);
        let nodes: Vec<At<'a>> = frames.iter().flat_map(|&f| self.graph.nodes(f)).collect();
        let mut samplers: Vec<At<'a>> = Vec::new();
        for &at in &nodes {
            let kind = node_type(at.node);
            let sampler = kind.contains("Sampler") || kind.contains("Guider");
            if sampler || (!self.graph.is_instance(at.node) && self.fed(at, "positive")) {
                samplers.push(at);
            }
        }
        samplers.sort_by_key(|at| !node_type(at.node).contains("Sampler"));
        for sampler in samplers {
            let found = sampler_prompt(Provenance::ComfyUiWorkflow, |side, seen, out| {
                self.sampler_side(sampler, side, 0, seen, out)
            });
            if self.scan.exhausted() {
                return None;
            }
            let Some(mut found) = found else {
                continue;
            };
            gather_settings(self, sampler, &mut found.parameters);
            return Some(found);
        }
        self.encoders_alone(&nodes)
    }

    /// Whether input `name` of `at` is fed by a node.
    fn fed(&mut self, at: At<'a>, name: &str) -> bool {
        let has_link = node_inputs(at.node).any(|(n, _, link)| n == name && link.is_some());
        has_link
            && matches!(
                self.graph.input(at, name, self.scan),
                Some(Source::Node(..))
            )
    }

    /// The node feeding input `name` of `at`, and its output slot.
    fn feeder(&mut self, at: At<'a>, name: &str) -> Option<(At<'a>, u64)> {
        match self.graph.input(at, name, self.scan)? {
            Source::Node(origin, slot) => Some((origin, slot)),
            Source::Value(_) => None,
        }
    }

    /// No sampler wired to text: the encoders themselves, in order.
    fn encoders_alone(&mut self, nodes: &[At<'a>]) -> Option<EmbeddedPrompt> {
        let (mut positive, mut negative) = (None, None);
        for &at in nodes {
            if !node_type(at.node).contains("TextEncode") {
                continue;
            }
            let Some(text) = self.encoder_text(at, 0).filter(|t| !t.trim().is_empty()) else {
                continue;
            };
            let title = at.node.get("title").and_then(Value::as_str).unwrap_or("");
            let slot = if title.to_lowercase().contains("neg") {
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
        at: At<'a>,
        side: Side,
        depth: usize,
        seen: &mut HashSet<(NodeKey, Side)>,
        out: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let mut any = false;
        for name in side.inputs(node_type(at.node)) {
            if let Some((origin, slot)) = self.feeder(at, name) {
                any = true;
                self.conditioning(origin, slot, side, depth + 1, seen, out);
            }
        }
        if any {
            return;
        }
        if let Some((guider, _)) = self.feeder(at, "guider") {
            if self.scan.step() && seen.insert((self.graph.key(guider), side)) {
                self.sampler_side(guider, side, depth + 1, seen, out);
            }
        }
    }

    fn conditioning(
        &mut self,
        at: At<'a>,
        slot: u64,
        side: Side,
        depth: usize,
        seen: &mut HashSet<(NodeKey, Side)>,
        out: &mut Vec<String>,
    ) {
        let kind = node_type(at.node);
        if depth > MAX_DEPTH
            || !self.scan.step()
            || !seen.insert((self.graph.key(at), side))
            || kind.contains("ZeroOut")
        {
            return;
        }
        if kind.contains("TextEncode") {
            out.extend(self.encoder_text(at, depth + 1));
            return;
        }
        let has = |name: &str| node_inputs(at.node).any(|(n, _, _)| n == name);
        let side = match has("positive") && has("negative") {
            true => side.of_slot(slot),
            false => side,
        };
        if let Some((origin, slot)) = self.feeder(at, side.name()) {
            return self.conditioning(origin, slot, side, depth + 1, seen, out);
        }
        let reroute = kind.contains("Reroute");
        let links: Vec<String> = node_inputs(at.node)
            .filter(|(name, kind, _)| {
                reroute || *kind == "CONDITIONING" || is_conditioning_input(name)
            })
            .filter_map(|(_, _, link)| link)
            .collect();
        let mut followed = false;
        for link in links {
            if let Some(Source::Node(origin, slot)) = self.graph.link(at.frame, &link, self.scan) {
                followed = true;
                self.conditioning(origin, slot, side, depth + 1, seen, out);
            }
        }
        if !followed {
            out.extend(self.encoder_text(at, depth + 1));
        }
    }

    /// The texts fed into the text inputs of `at` (those `wanted`): node texts and values
    /// promoted onto an instance.
    fn linked_texts(
        &mut self,
        at: At<'a>,
        wanted: impl Fn(&str, &str) -> bool,
        depth: usize,
    ) -> Vec<String> {
        let links: Vec<String> = node_inputs(at.node)
            .filter(|(name, kind, _)| wanted(name, kind))
            .filter_map(|(_, _, link)| link)
            .collect();
        let mut parts = Vec::new();
        for link in links {
            match self.graph.link(at.frame, &link, self.scan) {
                Some(Source::Node(origin, _)) => parts.extend(self.text_node(origin, depth + 1)),
                Some(Source::Value(Value::String(text))) => parts.push(text.clone()),
                _ => {}
            }
        }
        parts
    }

    /// The texts promoted onto the text widgets of `at`.
    fn promoted_texts(&self, at: At<'a>) -> Vec<String> {
        let promoted = self.graph.promoted(at, is_text_input);
        let texts = promoted.into_iter().filter_map(|(_, v)| v.as_str());
        texts.map(str::to_string).collect()
    }

    /// An encoder's text: its text inputs linked from other nodes, else the texts promoted
    /// onto it, else its text widgets.
    fn encoder_text(&mut self, at: At<'a>, depth: usize) -> Option<String> {
        let mut parts = self.linked_texts(at, |name, _| is_text_input(name), depth);
        if parts.is_empty() {
            parts = self.promoted_texts(at);
        }
        if parts.is_empty() {
            parts = encoder_widgets(at.node);
            if node_type(at.node) == "ImpactWildcardEncode" {
                // The populated text when there is one, else the wildcard text.
                parts.retain(|p| !p.trim().is_empty());
                parts.truncate(1);
            }
        }
        let text = join_texts(parts, ", ");
        (!text.is_empty()).then_some(text)
    }

    /// The text a node (a primitive, a string node) gives, computed once: the texts linked
    /// into it, else the text promoted onto it, else its first string widget.
    fn text_node(&mut self, at: At<'a>, depth: usize) -> Option<String> {
        let key = self.graph.key(at);
        if let Some(known) = self.texts.get(&key) {
            return known.clone();
        }
        if depth > MAX_DEPTH || !self.scan.step() {
            return None;
        }
        self.texts.insert(key, None);
        let wanted = |name: &str, kind: &str| kind == "STRING" || is_text_input(name);
        let mut parts = self.linked_texts(at, wanted, depth);
        if parts.is_empty() {
            parts = self.promoted_texts(at);
        }
        if parts.is_empty() {
            let widgets = at.node.get("widgets_values").and_then(Value::as_array);
            let first = widgets.and_then(|w| w.iter().find_map(Value::as_str));
            parts.extend(first.filter(|s| !is_model_file(s)).map(str::to_string));
        }
        let text = Some(join_texts(parts, ", ")).filter(|t| !t.is_empty());
        self.texts.insert(key, text.clone());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(workflow: Value) -> EmbeddedPrompt {
        let found = parse_workflow(&workflow.to_string(), &mut Scan::new());
        found.expect("readable").expect("a prompt")
    }

    /// An encoder in definition `inner`, which is held by definition `outer` (stored in
    /// `outer`'s own `definitions`), its text a widget input of the `inner` instance.
    #[test]
    fn nested_definitions_string_proxy_widgets_and_inputs_found_by_name() {
        let inner = json!({"id": "inner", "inputs": [{"name": "clip"}, {"name": "text"}],
            "outputs": [{"name": "CONDITIONING"}],
            "nodes": [{"id": 1, "type": "CLIPTextEncode", "widgets_values": ["stale"],
                "inputs": [{"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 5}]}],
            "links": [{"id": 5, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 0},
                      {"id": 6, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0}]});
        let outer = json!({"id": "outer", "inputs": [], "outputs": [],
            "definitions": {"subgraphs": [inner]},
            "nodes": [
                // Inputs out of order: found by name. proxyWidgets as a JSON string.
                {"id": 2, "type": "inner", "widgets_values": ["a glass of red wine"],
                 "properties": {"proxyWidgets": "[[\"-1\", \"text\"]]"},
                 "inputs": [{"name": "text", "type": "STRING", "link": null},
                            {"name": "clip", "type": "CLIP", "link": null}]},
                {"id": 3, "type": "KSampler", "widgets_values": [9, "fixed", 12],
                 "inputs": [{"name": "positive", "type": "CONDITIONING", "link": 7}]}],
            "links": [{"id": 7, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0}]});
        let workflow = json!({"nodes": [{"id": 1, "type": "outer"}], "links": [],
            "definitions": {"subgraphs": [outer]}});
        let found = read(workflow);
        assert_eq!(found.prompt, "a glass of red wine");
        assert_eq!(found.parameters["seed"], json!(9));
        assert_eq!(found.parameters["steps"], json!(12));
    }

    /// Without `proxyWidgets`, an instance's widgets follow the definition's inputs that feed
    /// a widget inside, in order; inputs feeding no widget take no place.
    #[test]
    fn instance_widgets_follow_the_widget_inputs_in_order() {
        let def = json!({"id": "d", "outputs": [{"name": "p"}, {"name": "n"}],
            "inputs": [{"name": "clip"}, {"name": "positive_text"}, {"name": "negative_text"}],
            "nodes": [
                {"id": 1, "type": "CLIPTextEncode", "widgets_values": [""], "inputs": [
                    {"name": "clip", "type": "CLIP", "link": 1},
                    {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 2}]},
                {"id": 2, "type": "CLIPTextEncode", "widgets_values": [""], "inputs": [
                    {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 3}]}],
            "links": [[1, -10, 0, 1, 0, "CLIP"], [2, -10, 1, 1, 1, "STRING"], [3, -10, 2, 2, 0, "STRING"],
                      [4, 1, 0, -20, 0, "CONDITIONING"], [5, 2, 0, -20, 1, "CONDITIONING"]]});
        let workflow = json!({"definitions": {"subgraphs": [def]},
            "nodes": [
                {"id": 8, "type": "d", "widgets_values": ["a quiet harbour", "people"], "inputs": [
                    {"name": "clip", "type": "CLIP", "link": null},
                    {"name": "positive_text", "type": "STRING", "link": null},
                    {"name": "negative_text", "type": "STRING", "link": null}]},
                {"id": 3, "type": "KSampler", "inputs": [
                    {"name": "positive", "type": "CONDITIONING", "link": 10},
                    {"name": "negative", "type": "CONDITIONING", "link": 11}]}],
            "links": [[10, 8, 0, 3, 0, "CONDITIONING"], [11, 8, 1, 3, 1, "CONDITIONING"]]});
        let found = read(workflow);
        assert_eq!(found.prompt, "a quiet harbour");
        assert_eq!(found.negative_prompt.as_deref(), Some("people"));
    }
}
