//! ComfyUI's `prompt` chunk: the API-format graph `{node_id: {class_type, inputs}}` that was
//! queued, where an input is a literal or a link `[node_id, output_index]`.
//!
//! The prompt is found from the sampler: `KSampler`, `KSamplerAdvanced`, `SamplerCustom`, or
//! `SamplerCustomAdvanced` through its `guider` (`CFGGuider`, `BasicGuider`, `DualCFGGuider`),
//! samplers first, then any other node with a `positive` input. Its `positive` (and
//! `negative`) link is followed back through pass-through nodes (reroutes, conditioning
//! combine/concat/average/set-area/timestep-range, ControlNet and style-model apply, video
//! conditioning such as `WanImageToVideo`, guidance nodes) to text encoders
//! (`CLIPTextEncode`, `CLIPTextEncodeSDXL`, ...), of which only the text inputs are read
//! (never model names or modes); a text may itself be a link to a string node. Settings
//! (`seed`, `steps`, `cfg`, `sampler_name`, `scheduler`, `denoise`, size, checkpoint) are
//! taken from the sampler and the nodes it reads from, nearest first.
//!
//! Subgraphs need nothing of their own here: the front end queues them expanded, each inner
//! node under its instance path (`"98:17"`, nested `"98:45:17"`: the execution ids of
//! `ExecutableNodeDTO`, Comfy-Org/ComfyUI_frontend `src/lib/litegraph/src/subgraph/`), with
//! promoted widget values and primitive nodes' values written into the inputs they feed;
//! string nodes that remain (`PrimitiveStringMultiline`, `PrimitiveString`, `String Literal`,
//! ...) are read through their `value` / `string` input. Samplers of the outer graph are
//! tried first.
//!
//! Every node is visited at most once per side and every string node's text computed once,
//! so a graph of cycles and fan-out costs its size; each visit spends a step of the file's
//! [`MAX_GRAPH_STEPS`](super::MAX_GRAPH_STEPS) budget, and a graph that spends it all gives
//! no prompt.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::params::{json_object, size_of};
use super::{EmbeddedPrompt, Provenance, Scan};
use crate::ingest::limits::MAX_PROMPT_BYTES;

type Graph = Map<String, Value>;

/// Farthest a setting is looked for from the sampler, in links.
const MAX_SETTINGS_DEPTH: usize = 32;

/// Inputs that hold text on their own.
pub(super) const TEXT_KEYS: [&str; 7] = [
    "text",
    "prompt",
    "string",
    "value",
    "text_positive",
    "populated_text",
    "user_prompt",
];

/// Inputs that hold text in parts, joined (SDXL, SD3, Flux, HunyuanDiT, concatenation).
pub(super) const TEXT_GROUPS: [&[&str]; 4] = [
    &["text_g", "text_l"],
    &["clip_l", "clip_g", "t5xxl"],
    &["bert", "mt5xl"],
    &["string_a", "string_b"],
];

/// Longest text carried while walking a graph: over the prompt limit, so that cutting it is
/// still seen, but never the size a graph of doubling concatenations would give.
pub(super) const MAX_WALK_TEXT: usize = 2 * MAX_PROMPT_BYTES;

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

/// Longest chain of links followed from a sampler to a text (the walk recurses).
pub(super) const MAX_DEPTH: usize = 64;

/// The side of a sampler's conditioning being followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Side {
    Positive,
    Negative,
}

impl Side {
    /// The input names that carry this side into a sampler or guider of class `class`.
    pub(super) fn inputs(self, class: &str) -> &'static [&'static str] {
        match self {
            Side::Positive if class.contains("Guider") => {
                &["positive", "cond1", "cond2", "conditioning"]
            }
            Side::Positive => &["positive"],
            Side::Negative => &["negative"],
        }
    }

    /// The side a link into a node with both `positive` and `negative` inputs carries: its
    /// output 0 is the positive conditioning, output 1 the negative.
    pub(super) fn of_slot(self, slot: u64) -> Side {
        match slot {
            0 => Side::Positive,
            1 => Side::Negative,
            _ => self,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Positive => "positive",
            Side::Negative => "negative",
        }
    }
}

/// Whether an input of a pass-through node carries conditioning, by its name.
pub(super) fn is_conditioning_input(name: &str) -> bool {
    name.contains("cond") && !name.contains("cond_area")
}

/// Joins distinct non-empty texts, stopping at [`MAX_WALK_TEXT`].
pub(super) fn join_texts(texts: impl IntoIterator<Item = String>, delimiter: &str) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for text in texts {
        let text = text.trim();
        if text.is_empty() || !seen.insert(text.to_string()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(delimiter);
        }
        out.push_str(text);
        if out.len() > MAX_WALK_TEXT {
            let end = crate::ingest::limits::cut_at_char_boundary(&out, MAX_WALK_TEXT).len();
            out.truncate(end);
            break;
        }
    }
    out
}

/// The prompt a sampler's two sides give, `None` when both are empty. `collect` gathers the
/// texts of one side, each node visited once per side (its `seen` set); the distinct texts
/// of a side are joined.
pub(super) fn sampler_prompt<K>(
    provenance: Provenance,
    mut collect: impl FnMut(Side, &mut HashSet<K>, &mut Vec<String>),
) -> Option<EmbeddedPrompt> {
    let mut side_text = |side| {
        let mut texts = Vec::new();
        collect(side, &mut HashSet::new(), &mut texts);
        join_texts(texts, ", ")
    };
    let positive = side_text(Side::Positive);
    let negative = side_text(Side::Negative);
    if positive.is_empty() && negative.is_empty() {
        return None;
    }
    Some(EmbeddedPrompt::new(provenance, positive).negative(Some(negative.as_str())))
}

/// The message of a graph that spent the file's step budget.
pub(super) fn too_complex() -> String {
    format!(
        "graph too complex: gave up after {} steps",
        super::MAX_GRAPH_STEPS
    )
}

/// The prompt of the `prompt` chunk's JSON; `None` when no sampler leads to any text. A
/// graph that spends the file's step budget is an error.
pub(super) fn parse_prompt_graph(
    text: &str,
    scan: &mut Scan,
) -> Result<Option<EmbeddedPrompt>, String> {
    let graph = json_object(text, "ComfyUI prompt")?;
    let mut walk = Walk {
        graph: &graph,
        scan,
        texts: HashMap::new(),
    };
    let found = walk.prompt();
    match walk.scan.exhausted() {
        true => Err(too_complex()),
        false => Ok(found),
    }
}

/// One walk over an API-format graph.
struct Walk<'g, 's> {
    graph: &'g Graph,
    scan: &'s mut Scan,
    /// The text of each string node, once computed (`None` while it is being computed, so a
    /// cycle reads as no text).
    texts: HashMap<&'g str, Option<String>>,
}

fn class(node: &Map<String, Value>) -> &str {
    node.get("class_type").and_then(Value::as_str).unwrap_or("")
}

fn inputs(node: &Map<String, Value>) -> Option<&Map<String, Value>> {
    node.get("inputs")?.as_object()
}

/// A node id as ComfyUI orders it: its instance path (`"98:45:17"`: nodes of the outer
/// graph first), each part by number.
fn id_path(id: &str) -> (usize, Vec<u64>) {
    let parts = id.split(':').map(|p| p.parse::<u64>().unwrap_or(u64::MAX));
    (id.matches(':').count(), parts.collect())
}

/// The node id and output index of a link `[id, index]` (id as string or number).
fn link(value: &Value) -> Option<(String, u64)> {
    let [id, index] = value.as_array()?.as_slice() else {
        return None;
    };
    let index = index.as_u64()?;
    match id {
        Value::String(s) => Some((s.clone(), index)),
        Value::Number(n) => Some((n.to_string(), index)),
        _ => None,
    }
}

impl<'g> Walk<'g, '_> {
    /// The node `id`, with its id borrowed from the graph.
    fn node(&self, id: &str) -> Option<(&'g str, &'g Map<String, Value>)> {
        let (id, node) = self.graph.get_key_value(id)?;
        Some((id.as_str(), node.as_object()?))
    }

    /// The first sampler (or guider) that leads to text, as a prompt with its settings.
    fn prompt(&mut self) -> Option<EmbeddedPrompt> {
        let graph = self.graph;
        let mut samplers: Vec<(&String, &Map<String, Value>)> = graph
            .iter()
            .filter_map(|(id, node)| Some((id, node.as_object()?)))
            .filter(|(_, node)| {
                let inputs = inputs(node);
                class(node).contains("Sampler")
                    || class(node).contains("Guider")
                    || inputs.is_some_and(|i| i.contains_key("positive"))
            })
            .collect();
        samplers.sort_by_cached_key(|(id, node)| {
            (
                !class(node).contains("Sampler"),
                id_path(id),
                id.to_string(),
            )
        });
        for (id, node) in samplers {
            let found = sampler_prompt(Provenance::ComfyUi, |side, seen, out| {
                self.sampler_side(node, side, 0, seen, out)
            });
            if self.scan.exhausted() {
                return None;
            }
            let Some(mut found) = found else {
                continue;
            };
            let mut roots = vec![id.as_str()];
            if !class(node).contains("Sampler") {
                // A guider is read by a sampler that holds the other settings.
                roots.extend(graph.iter().filter_map(|(other, n)| {
                    let mut values = inputs(n.as_object()?)?.values();
                    let links_here = values.any(|v| link(v).is_some_and(|(to, _)| to == *id));
                    links_here.then_some(other.as_str())
                }));
            }
            gather_settings(graph, &roots, &mut found.parameters);
            return Some(found);
        }
        None
    }

    /// Collects the texts of `side` for a sampler or guider, following a `guider` link.
    fn sampler_side(
        &mut self,
        node: &'g Map<String, Value>,
        side: Side,
        depth: usize,
        seen: &mut HashSet<(&'g str, Side)>,
        out: &mut Vec<String>,
    ) {
        let Some(inputs) = inputs(node) else { return };
        if depth > MAX_DEPTH {
            return;
        }
        let mut any = false;
        for name in side.inputs(class(node)) {
            match inputs.get(*name) {
                Some(Value::String(text)) => out.push(text.trim().to_string()),
                Some(value) => {
                    if let Some((id, slot)) = link(value) {
                        self.conditioning(&id, slot, side, depth + 1, seen, out);
                    }
                }
                None => continue,
            }
            any = true;
        }
        if any {
            return;
        }
        let guider = inputs.get("guider").and_then(link);
        if let Some((id, _)) = guider {
            if let Some((key, guider)) = self.node(&id) {
                if self.scan.step() && seen.insert((key, side)) {
                    self.sampler_side(guider, side, depth + 1, seen, out);
                }
            }
        }
    }

    /// Collects the texts behind output `slot` of node `id`, on `side`.
    fn conditioning(
        &mut self,
        id: &str,
        slot: u64,
        side: Side,
        depth: usize,
        seen: &mut HashSet<(&'g str, Side)>,
        out: &mut Vec<String>,
    ) {
        let Some((id, node)) = self.node(id) else {
            return;
        };
        if depth > MAX_DEPTH || !self.scan.step() || !seen.insert((id, side)) {
            return;
        }
        let Some(inputs) = inputs(node) else { return };
        let class = class(node);
        if class.contains("ZeroOut") {
            return;
        }
        if class.contains("TextEncode") {
            out.extend(self.node_text(id, node, depth + 1));
            return;
        }
        // A node taking and giving both sides (ControlNet apply, video conditioning).
        let side = match inputs.contains_key("positive") && inputs.contains_key("negative") {
            true => side.of_slot(slot),
            false => side,
        };
        match inputs.get(side.name()) {
            Some(Value::String(text)) => return out.push(text.trim().to_string()),
            Some(value) => {
                if let Some((next, slot)) = link(value) {
                    return self.conditioning(&next, slot, side, depth + 1, seen, out);
                }
            }
            None => {}
        }
        let reroute = class.contains("Reroute");
        let mut keys: Vec<&String> = inputs
            .keys()
            .filter(|k| reroute || is_conditioning_input(k))
            .collect();
        // In input order; a concatenation's `conditioning_to` comes before its `_from`.
        keys.sort_by_key(|k| (k.ends_with("_from"), k.as_str()));
        let mut followed = false;
        for key in keys {
            if let Some((next, slot)) = link(&inputs[key]) {
                followed = true;
                self.conditioning(&next, slot, side, depth + 1, seen, out);
            }
        }
        if !followed {
            // An unknown encoder that holds its text in a usual input.
            out.extend(self.node_text(id, node, depth + 1));
        }
    }

    /// The text node `id` holds or links to, computed once.
    fn node_text(
        &mut self,
        id: &'g str,
        node: &'g Map<String, Value>,
        depth: usize,
    ) -> Option<String> {
        if let Some(known) = self.texts.get(id) {
            return known.clone();
        }
        if depth > MAX_DEPTH || !self.scan.step() {
            return None;
        }
        self.texts.insert(id, None);
        let text = self.compute_text(node, depth);
        self.texts.insert(id, text.clone());
        text
    }

    fn compute_text(&mut self, node: &'g Map<String, Value>, depth: usize) -> Option<String> {
        let inputs = inputs(node)?;
        for key in TEXT_KEYS {
            if let Some(text) = inputs.get(key).and_then(|v| self.string_of(v, depth)) {
                return Some(text);
            }
        }
        let delimiter = inputs
            .get("delimiter")
            .and_then(Value::as_str)
            .unwrap_or(", ");
        for group in TEXT_GROUPS {
            let parts: Vec<String> = group
                .iter()
                .filter_map(|k| inputs.get(*k))
                .filter_map(|v| self.string_of(v, depth))
                .collect();
            if !parts.is_empty() {
                return Some(join_texts(parts, delimiter));
            }
        }
        None
    }

    /// A literal string, or the text of the node a link points to.
    fn string_of(&mut self, value: &'g Value, depth: usize) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            _ => {
                let (id, _) = link(value)?;
                let (id, node) = self.node(&id)?;
                self.node_text(id, node, depth + 1)
            }
        }
    }
}

/// Fills the settings from the `roots` and the nodes they read from, breadth first (nearest
/// wins), never crossing into the conditioning (text) side.
fn gather_settings(graph: &Graph, roots: &[&str], params: &mut Map<String, Value>) {
    let mut queue: VecDeque<(String, usize)> = roots.iter().map(|r| (r.to_string(), 0)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some((id, depth)) = queue.pop_front() {
        if depth > MAX_SETTINGS_DEPTH || !seen.insert(id.clone()) {
            continue;
        }
        let Some(inputs) = graph.get(&id).and_then(Value::as_object).and_then(inputs) else {
            continue;
        };
        for (input, key) in SETTINGS {
            match inputs.get(input) {
                Some(v @ (Value::Number(_) | Value::String(_))) => {
                    params.entry(key).or_insert(v.clone());
                }
                Some(v) => {
                    // A setting fed by a primitive node: its first scalar input.
                    let target = link(v).and_then(|(n, _)| graph.get(&n)?.as_object());
                    let target = target.and_then(self::inputs);
                    let scalar = target.and_then(|t| {
                        t.get(input)
                            .or_else(|| t.values().take(16).find(|v| v.is_number()))
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
                matches!(name.as_str(), "positive" | "negative") || is_conditioning_input(name);
            if let (false, Some((next, _))) = (text_side, link(value)) {
                queue.push_back((next, depth + 1));
            }
        }
    }
    if let Some(size) = size_of(params) {
        params.entry("size").or_insert(size);
    }
}
