//! The graphs of a UI-format ComfyUI workflow, subgraphs expanded: the workflow's own graph and
//! each subgraph definition, and the instances of those definitions entered as the walk in
//! `comfy_ui` reaches them.
//!
//! The layout is the one ComfyUI's front end writes (Comfy-Org/ComfyUI_frontend): the zod
//! schema `src/platform/workflow/validation/schemas/workflowSchema.ts` (`zComfyWorkflow`,
//! `zSubgraphDefinition`, `zSubgraphIO`, `zComfyLinkObject`), the boundary node ids
//! `SUBGRAPH_INPUT_ID = -10` and `SUBGRAPH_OUTPUT_ID = -20` of `src/lib/litegraph/src/constants.ts`,
//! the promoted widgets of `src/core/schemas/proxyWidget.ts` (`properties.proxyWidgets`), the
//! link resolution of `src/lib/litegraph/src/subgraph/ExecutableNodeDTO.ts`, and the serialised
//! workflows under `browser_tests/assets/subgraphs/`:
//!
//! - `definitions.subgraphs[]` (of the workflow, or of a definition, nested): each a graph with
//!   its own `nodes` and `links` (objects `{id, origin_id, origin_slot, target_id, target_slot}`
//!   or the older arrays), and ordered `inputs` / `outputs`.
//! - A node whose `type` is a definition's `id` is an instance of it. Inside, a link from node
//!   `-10`, slot `k`, carries the instance's input `k`; the link into node `-20`, slot `j`,
//!   gives the instance's output `j`.
//! - An instance input with no link takes the value of the instance's widget for it: its entry
//!   in `widgets_values` at the position of `["-1", input name]` in `proxyWidgets` when the
//!   instance has that property, else at its position among the inputs that feed a widget
//!   inside (an inner input with a `widget` member).
//! - A `proxyWidgets` entry `[inner node id, widget name]` promotes an inner node's widget:
//!   the instance's value at the same position replaces the inner node's own.
//!
//! Each instance is entered once per place it is reached from (its instance path, as ComfyUI's
//! API graph names inner nodes: `"98:17"`); a node is known by its frame and its place in the
//! JSON, never by copies of its id, so memory stays in proportion to the work. An instance of a definition
//! that is already being expanded above it (a subgraph holding itself) is not entered, nor
//! one nested deeper than [`MAX_NESTING`] or past [`MAX_FRAMES`] instances in all; every
//! instance entered and every boundary crossed spends a step of the file's budget.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::Scan;

/// A node of a workflow: `{id, type, inputs, widgets_values, properties, ...}`.
pub(super) type Node = Map<String, Value>;

/// The id a subgraph's links give its input side (`SUBGRAPH_INPUT_ID`).
const INPUT_NODE: &str = "-10";
/// The id a subgraph's links give its output side (`SUBGRAPH_OUTPUT_ID`).
const OUTPUT_NODE: &str = "-20";
/// Deepest nesting of subgraph instances entered.
pub(super) const MAX_NESTING: usize = 32;
/// Most instances entered in one workflow.
pub(super) const MAX_FRAMES: usize = 10_000;
/// Most `proxyWidgets` entries read from one instance.
const MAX_PROXIES: usize = 256;

/// A node id, a link id or a slot as a string (numbers and strings both occur).
pub(super) fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A slot index, as a number or a numeric string.
fn slot_of(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn node_type(node: &Node) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

pub(super) fn node_id(node: &Node) -> String {
    node.get("id").and_then(id_string).unwrap_or_default()
}

/// The inputs of a node: (name, type, link id).
pub(super) fn node_inputs(node: &Node) -> impl Iterator<Item = (&str, &str, Option<String>)> {
    inputs_of(node).filter_map(|input| {
        let name = input.get("name")?.as_str()?;
        let kind = input.get("type").and_then(Value::as_str).unwrap_or("");
        Some((name, kind, input.get("link").and_then(id_string)))
    })
}

fn inputs_of(node: &Node) -> impl Iterator<Item = &Map<String, Value>> {
    let list = node.get("inputs").and_then(Value::as_array);
    list.into_iter().flatten().filter_map(Value::as_object)
}

/// One graph: the workflow's own, or a subgraph definition's.
struct Graph<'a> {
    nodes: HashMap<String, &'a Node>,
    /// Node ids in ComfyUI's numeric order.
    order: Vec<String>,
    /// Link id -> (origin node id, origin slot).
    links: HashMap<String, (String, u64)>,
    /// Output slot -> the link into it (links to node -20).
    outputs: HashMap<u64, String>,
    /// The definition's input names, in order (none for the workflow's own graph).
    inputs: Vec<String>,
    /// Per input: whether it feeds a widget inside.
    widget_inputs: Vec<bool>,
}

impl<'a> Graph<'a> {
    fn new(obj: &'a Map<String, Value>) -> Self {
        let mut graph = Graph {
            nodes: HashMap::new(),
            order: Vec::new(),
            links: HashMap::new(),
            outputs: HashMap::new(),
            inputs: Vec::new(),
            widget_inputs: Vec::new(),
        };
        let nodes = obj.get("nodes").and_then(Value::as_array);
        for node in nodes.into_iter().flatten().filter_map(Value::as_object) {
            if let Some(id) = node.get("id").and_then(id_string) {
                graph.order.push(id.clone());
                graph.nodes.insert(id, node);
            }
        }
        let number = |id: &str| id.parse::<i64>().unwrap_or(i64::MAX);
        graph
            .order
            .sort_by(|a, b| number(a).cmp(&number(b)).then_with(|| a.cmp(b)));
        let links = obj.get("links").and_then(Value::as_array);
        for link in links.into_iter().flatten() {
            graph.add_link(link);
        }
        let io = |key: &str| obj.get(key).and_then(Value::as_array).into_iter().flatten();
        graph.inputs = io("inputs")
            .map(|i| i.get("name").and_then(Value::as_str).unwrap_or("").into())
            .collect();
        for (slot, output) in io("outputs").enumerate() {
            // The output's own link list, where no link into node -20 says it.
            let first = output.get("linkIds").and_then(Value::as_array);
            if let Some(link) = first.and_then(|l| l.first()).and_then(id_string) {
                graph.outputs.entry(slot as u64).or_insert(link);
            }
        }
        graph.widget_inputs = graph.find_widget_inputs();
        graph
    }

    /// Records a link `[id, origin, slot, target, target slot, type]` or its object form.
    fn add_link(&mut self, link: &Value) {
        let (id, origin, slot, target, target_slot) = match link {
            Value::Array(parts) if parts.len() >= 2 => (
                id_string(&parts[0]),
                id_string(&parts[1]),
                slot_of(parts.get(2)),
                parts.get(3).and_then(id_string),
                slot_of(parts.get(4)),
            ),
            Value::Object(o) => (
                o.get("id").and_then(id_string),
                o.get("origin_id").and_then(id_string),
                slot_of(o.get("origin_slot")),
                o.get("target_id").and_then(id_string),
                slot_of(o.get("target_slot")),
            ),
            _ => return,
        };
        let (Some(id), Some(origin)) = (id, origin) else {
            return;
        };
        if let (Some(OUTPUT_NODE), Some(target_slot)) = (target.as_deref(), target_slot) {
            self.outputs.insert(target_slot, id.clone());
        }
        self.links.insert(id, (origin, slot.unwrap_or(0)));
    }

    /// Which of the definition's inputs reach an inner input that is a widget.
    fn find_widget_inputs(&self) -> Vec<bool> {
        let mut found = vec![false; self.inputs.len()];
        for node in self.nodes.values() {
            for input in inputs_of(node).filter(|i| i.contains_key("widget")) {
                let link = input.get("link").and_then(id_string);
                let origin = link.and_then(|l| self.links.get(&l));
                if let Some((INPUT_NODE, slot)) = origin.map(|(o, s)| (o.as_str(), *s)) {
                    if let Some(flag) = found.get_mut(slot as usize) {
                        *flag = true;
                    }
                }
            }
        }
        found
    }
}

/// A workflow's graphs: its own first, then every subgraph definition.
pub(super) struct Workflow<'a> {
    graphs: Vec<Graph<'a>>,
    definitions: HashMap<&'a str, usize>,
}

impl<'a> Workflow<'a> {
    /// The graphs of a workflow object, nested definitions included.
    pub(super) fn new(obj: &'a Map<String, Value>) -> Self {
        let mut flow = Workflow {
            graphs: vec![Graph::new(obj)],
            definitions: HashMap::new(),
        };
        let mut pending = vec![obj];
        while let Some(holder) = pending.pop() {
            let list = holder.get("definitions").and_then(|d| d.get("subgraphs"));
            for def in list.and_then(Value::as_array).into_iter().flatten() {
                let Some(def) = def.as_object() else { continue };
                let Some(id) = def.get("id").and_then(Value::as_str) else {
                    continue;
                };
                if flow.definitions.contains_key(id) {
                    continue;
                }
                flow.definitions.insert(id, flow.graphs.len());
                flow.graphs.push(Graph::new(def));
                pending.push(def);
            }
        }
        flow
    }

    /// Whether `node` is an instance of a subgraph definition.
    pub(super) fn is_instance(&self, node: &Node) -> bool {
        self.definitions.contains_key(node_type(node))
    }
}

/// A node of the expansion: its frame and where it lies in the workflow's JSON.
pub(super) type NodeKey = (usize, usize);

/// A node where the walk met it: the instance frame it lies in, and the node.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    pub(super) frame: usize,
    pub(super) node: &'a Node,
}

/// What feeds an input: a node's output slot, or a value promoted onto an instance.
pub(super) enum Source<'a> {
    Node(At<'a>, u64),
    Value(&'a Value),
}

/// One expansion of a graph: the workflow itself, or one instance of a definition.
struct Frame<'a> {
    /// The frame the instance lies in (`None` for the workflow itself).
    parent: Option<usize>,
    instance: Option<&'a Node>,
    graph: usize,
    nesting: usize,
    /// Promoted inner widgets: (inner node id, widget name, the instance's value).
    promoted: Vec<(String, String, &'a Value)>,
}

/// The frames entered so far over one workflow.
pub(super) struct Expansion<'w, 'a> {
    flow: &'w Workflow<'a>,
    frames: Vec<Frame<'a>>,
    /// The instance's frame, `None` when it may not be entered.
    entered: HashMap<NodeKey, Option<usize>>,
}

/// The `proxyWidgets` of an instance: (node id, widget name) pairs, a JSON string tolerated.
fn proxy_widgets(instance: &Node) -> Option<Vec<(String, String)>> {
    let property = instance.get("properties")?.get("proxyWidgets")?;
    let parsed;
    let list = match property {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).ok()?;
            parsed.as_array()?
        }
        other => other.as_array()?,
    };
    let pairs = list.iter().take(MAX_PROXIES).map(|entry| {
        let pair = entry.as_array().map(Vec::as_slice);
        match pair {
            Some([id, name, ..]) => (
                id_string(id).unwrap_or_default(),
                name.as_str().unwrap_or("").to_string(),
            ),
            _ => (String::new(), String::new()),
        }
    });
    Some(pairs.collect())
}

fn widget_values(node: &Node) -> &[Value] {
    let values = node.get("widgets_values").and_then(Value::as_array);
    values.map_or(&[], Vec::as_slice)
}

impl<'w, 'a> Expansion<'w, 'a> {
    pub(super) fn new(flow: &'w Workflow<'a>) -> Self {
        let top = Frame {
            parent: None,
            instance: None,
            graph: 0,
            nesting: 0,
            promoted: Vec::new(),
        };
        Expansion {
            flow,
            frames: vec![top],
            entered: HashMap::new(),
        }
    }

    /// Whether `node` is an instance of a subgraph definition.
    pub(super) fn is_instance(&self, node: &Node) -> bool {
        self.flow.is_instance(node)
    }

    /// What tells `at` from every other node of the expansion.
    pub(super) fn key(&self, at: At<'a>) -> NodeKey {
        (at.frame, std::ptr::from_ref(at.node) as usize)
    }

    /// The nodes of `frame`, in id order.
    pub(super) fn nodes(&self, frame: usize) -> Vec<At<'a>> {
        let graph = &self.flow.graphs[self.frames[frame].graph];
        let nodes = graph.order.iter().filter_map(|id| graph.nodes.get(id));
        nodes.map(|&node| At { frame, node }).collect()
    }

    /// Every frame, breadth first from the workflow's own graph (outer instances first); each
    /// node looked at spends a step.
    pub(super) fn all_frames(&mut self, scan: &mut Scan) -> Vec<usize> {
        let mut order = vec![0];
        let mut listed = HashSet::from([0]);
        let mut next = 0;
        while next < order.len() {
            let frame = order[next];
            next += 1;
            for at in self.nodes(frame) {
                if !scan.step() {
                    return order;
                }
                if !self.flow.is_instance(at.node) {
                    continue;
                }
                if let Some(child) = self.enter(frame, at.node, scan) {
                    if listed.insert(child) {
                        order.push(child);
                    }
                }
            }
        }
        order
    }

    /// The frame of `instance` (lying in `frame`), entered on first use; `None` when it may
    /// not be entered (see the module documentation).
    fn enter(&mut self, frame: usize, instance: &'a Node, scan: &mut Scan) -> Option<usize> {
        let graph = *self.flow.definitions.get(node_type(instance))?;
        let key = self.key(At {
            frame,
            node: instance,
        });
        if let Some(known) = self.entered.get(&key) {
            return *known;
        }
        let nesting = self.frames[frame].nesting + 1;
        let allowed = self.frames.len() < MAX_FRAMES
            && nesting <= MAX_NESTING
            && !self.expanding(frame, graph)
            && scan.step();
        let child = allowed.then(|| {
            let promoted = proxy_widgets(instance)
                .unwrap_or_default()
                .into_iter()
                .zip(widget_values(instance))
                .filter(|((node, _), value)| node != "-1" && !value.is_null())
                .map(|((node, name), value)| (node, name, value))
                .collect();
            let child = Frame {
                parent: Some(frame),
                instance: Some(instance),
                graph,
                nesting,
                promoted,
            };
            self.frames.push(child);
            self.frames.len() - 1
        });
        self.entered.insert(key, child);
        child
    }

    /// Whether definition `graph` is `frame`'s or one of the frames it lies in.
    fn expanding(&self, frame: usize, graph: usize) -> bool {
        let mut at = Some(frame);
        while let Some(frame) = at {
            if self.frames[frame].graph == graph {
                return true;
            }
            at = self.frames[frame].parent;
        }
        false
    }

    /// What feeds input `name` of `at`.
    pub(super) fn input(&mut self, at: At<'a>, name: &str, scan: &mut Scan) -> Option<Source<'a>> {
        let (_, _, link) = node_inputs(at.node).find(|(n, _, _)| *n == name)?;
        self.link(at.frame, &link?, scan)
    }

    /// What link `link` of `frame`'s graph carries, followed across subgraph boundaries: out
    /// through node -10 to the instance's input, in through an instance to its node -20.
    pub(super) fn link(&mut self, frame: usize, link: &str, scan: &mut Scan) -> Option<Source<'a>> {
        let flow = self.flow;
        let (mut frame, mut link) = (frame, link.to_string());
        for _ in 0..=2 * MAX_NESTING {
            if !scan.step() {
                return None;
            }
            let graph = &flow.graphs[self.frames[frame].graph];
            let (origin, slot) = graph.links.get(&link)?;
            if origin == INPUT_NODE {
                let parent = self.frames[frame].parent?;
                let instance = self.frames[frame].instance?;
                match instance_input_link(instance, *slot, graph.inputs.get(*slot as usize)?) {
                    Some(outer) => (frame, link) = (parent, outer),
                    None => return self.promoted_input(frame, *slot).map(Source::Value),
                }
                continue;
            }
            let node = *graph.nodes.get(origin)?;
            if !flow.is_instance(node) {
                return Some(Source::Node(At { frame, node }, *slot));
            }
            let child = self.enter(frame, node, scan)?;
            link = flow.graphs[self.frames[child].graph]
                .outputs
                .get(slot)?
                .clone();
            frame = child;
        }
        None
    }

    /// The value an instance's widget gives the input `slot` of `frame`'s definition.
    fn promoted_input(&self, frame: usize, slot: u64) -> Option<&'a Value> {
        let frame = &self.frames[frame];
        let instance = frame.instance?;
        let graph = &self.flow.graphs[frame.graph];
        let values = widget_values(instance);
        let slot = slot as usize;
        let position = match proxy_widgets(instance).filter(|p| !p.is_empty()) {
            Some(proxies) => {
                let name = graph.inputs.get(slot)?;
                proxies.iter().position(|(n, w)| n == "-1" && w == name)?
            }
            None if *graph.widget_inputs.get(slot)? => {
                graph.widget_inputs[..slot].iter().filter(|w| **w).count()
            }
            None => return None,
        };
        values.get(position).filter(|v| !v.is_null())
    }

    /// The values promoted onto those of `at`'s widgets whose names pass `wanted`, in the
    /// instance's order: (widget name, value).
    pub(super) fn promoted(
        &self,
        at: At<'a>,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<(&str, &'a Value)> {
        let frame = &self.frames[at.frame];
        if frame.promoted.is_empty() {
            return Vec::new();
        }
        let id = node_id(at.node);
        let promoted = frame.promoted.iter().filter(|(node, _, _)| *node == id);
        let named = promoted.filter(|(_, name, _)| wanted(name));
        named
            .map(|(_, name, value)| (name.as_str(), *value))
            .collect()
    }
}

/// The link into an instance's input `slot` (named `name` in its definition): the input at
/// the same position when its name agrees, else the input of that name.
fn instance_input_link(instance: &Node, slot: u64, name: &str) -> Option<String> {
    let inputs: Vec<(&str, &str, Option<String>)> = node_inputs(instance).collect();
    let same_place = inputs.get(slot as usize).filter(|(n, _, _)| *n == name);
    let input = same_place.or_else(|| inputs.iter().find(|(n, _, _)| *n == name))?;
    input.2.clone()
}
