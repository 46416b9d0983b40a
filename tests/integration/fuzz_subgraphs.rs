//! Fuzzing of the ComfyUI subgraph expansion (structure-aware, with `fuzz_ingest`'s runner):
//! random workflows whose subgraph definitions hold instances of any definition, themselves
//! included (cycles of nesting), with links across the -10 / -20 boundaries to any slot,
//! promoted widgets and nested `definitions`; and API graphs whose node ids are instance paths
//! (`"7:9:3"`) linking anywhere. Plus fixed shapes built to blow up: a subgraph holding
//! itself, two holding each other, a binary fan-out 24 levels deep, a chain of 100 nested
//! definitions. Every input must be read within the runner's time budget with no panic.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use promptdex::ingest::{read_metadata_bytes, Metadata};

use crate::fuzz_ingest::{check_read, fuzz, png_text};

const CLASSES: [&str; 12] = [
    "KSampler",
    "SamplerCustomAdvanced",
    "CFGGuider",
    "DualCFGGuider",
    "CLIPTextEncode",
    "ConditioningCombine",
    "Reroute",
    "PrimitiveStringMultiline",
    "PrimitiveNode",
    "RandomNoise",
    "EmptyLatentImage",
    "CheckpointLoaderSimple",
];

const INPUTS: [&str; 12] = [
    "positive",
    "negative",
    "guider",
    "conditioning",
    "conditioning_1",
    "text",
    "value",
    "seed",
    "noise",
    "model",
    "latent_image",
    "clip",
];

const WIDGETS: [&str; 5] = [
    "a cat on a roof",
    "",
    "model.safetensors",
    "blurry",
    "randomize",
];

/// One generated node: kind, inputs (name, origin, slot, widget), widgets, proxy entries.
type NodeSpec = (u8, Vec<(u8, u16, u8, bool)>, Vec<u8>, Vec<(i16, u8)>);

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        any::<u8>(),
        prop::collection::vec((any::<u8>(), any::<u16>(), 0u8..4, any::<bool>()), 0..6),
        prop::collection::vec(any::<u8>(), 0..5),
        prop::collection::vec((-2i16..12, any::<u8>()), 0..4),
    )
}

/// Outer graph first, then up to 6 definitions; whether definitions nest in the first one.
fn workflow_spec() -> impl Strategy<Value = (Vec<Vec<NodeSpec>>, bool)> {
    let graph = prop::collection::vec(node_spec(), 1..24);
    (prop::collection::vec(graph, 1..8), any::<bool>())
}

fn widget(byte: u8) -> Value {
    match byte % 4 {
        0 => json!(byte as u64 * 1000),
        _ => json!(WIDGETS[byte as usize % WIDGETS.len()]),
    }
}

/// The JSON of graph `g` of `graphs` (0: the workflow's own, else definition `sg{g}`).
fn graph_json(graphs: &[Vec<NodeSpec>], g: usize) -> Map<String, Value> {
    let defs = graphs.len() - 1;
    let nodes = &graphs[g];
    let (mut list, mut links) = (Vec::new(), Vec::new());
    for (j, (kind, inputs, widgets, proxies)) in nodes.iter().enumerate() {
        let kind = match (defs, kind % 3) {
            (1.., 0) => format!("sg{}", 1 + *kind as usize % defs),
            _ => CLASSES[*kind as usize % CLASSES.len()].to_string(),
        };
        let mut ins = Vec::new();
        for (slot, (name, origin, out, is_widget)) in inputs.iter().enumerate() {
            let origin = match *origin as usize % (nodes.len() + 1) {
                o if o == nodes.len() => -10,
                o => o as i64 + 1,
            };
            let id = links.len() + 1;
            links.push(json!({"id": id, "origin_id": origin, "origin_slot": out,
                "target_id": j + 1, "target_slot": slot, "type": "*"}));
            let name = INPUTS[*name as usize % INPUTS.len()];
            let mut input = json!({"name": name, "type": "*", "link": id});
            if *is_widget {
                input["widget"] = json!({"name": name});
            }
            ins.push(input);
        }
        if g > 0 && j % 3 == 0 {
            let id = links.len() + 1;
            links.push(json!({"id": id, "origin_id": j + 1, "origin_slot": 0,
                "target_id": -20, "target_slot": j % 4, "type": "*"}));
        }
        let proxies: Vec<Value> = proxies
            .iter()
            .map(|(id, name)| json!([id.to_string(), INPUTS[*name as usize % INPUTS.len()]]))
            .collect();
        list.push(json!({"id": j + 1, "type": kind, "inputs": ins,
            "widgets_values": widgets.iter().map(|b| widget(*b)).collect::<Vec<_>>(),
            "properties": {"proxyWidgets": proxies}}));
    }
    let io: Vec<Value> = INPUTS[4..9]
        .iter()
        .map(|n| json!({"name": n, "type": "*"}))
        .collect();
    let mut out = Map::new();
    out.insert("id".into(), json!(format!("sg{g}")));
    out.insert("nodes".into(), Value::Array(list));
    out.insert("links".into(), Value::Array(links));
    out.insert("inputs".into(), Value::Array(io.clone()));
    out.insert("outputs".into(), Value::Array(io));
    out
}

/// A workflow of the generated graphs; with `nest`, definitions after the first are stored in
/// the first one's own `definitions`.
fn workflow_json(graphs: &[Vec<NodeSpec>], nest: bool) -> String {
    let mut top = graph_json(graphs, 0);
    let mut defs: Vec<Value> = (1..graphs.len())
        .map(|g| Value::Object(graph_json(graphs, g)))
        .collect();
    if nest && defs.len() > 1 {
        let inner: Vec<Value> = defs.drain(1..).collect();
        defs[0]["definitions"] = json!({"subgraphs": inner});
    }
    top.insert("definitions".into(), json!({"subgraphs": defs}));
    Value::Object(top).to_string()
}

/// An API graph whose ids are instance paths, linking to any id (existing or not, itself).
fn api_json(nodes: &[NodeSpec]) -> String {
    let key = |i: usize| match i % 3 {
        0 => i.to_string(),
        1 => format!("7:{i}"),
        _ => format!("7:9:{i}"),
    };
    let mut graph = Map::new();
    for (i, (kind, inputs, widgets, _)) in nodes.iter().enumerate() {
        let mut ins = Map::new();
        for (name, origin, out, literal) in inputs {
            let value = match literal {
                true => widget(*out),
                false => json!([key(*origin as usize % (nodes.len() + 2)), out]),
            };
            ins.insert(INPUTS[*name as usize % INPUTS.len()].into(), value);
        }
        for (w, byte) in widgets.iter().enumerate() {
            ins.insert(
                ["seed", "steps", "cfg", "text"][w % 4].into(),
                widget(*byte),
            );
        }
        let class = CLASSES[*kind as usize % CLASSES.len()];
        graph.insert(key(i), json!({"class_type": class, "inputs": ins}));
    }
    Value::Object(graph).to_string()
}

fn read(keyword: &str, text: &str) -> Metadata {
    read_metadata_bytes("fuzz.png", &png_text(keyword, text))
}

#[test]
fn fuzz_comfyui_random_subgraph_nestings() {
    fuzz(
        "comfyui subgraph nestings",
        300,
        workflow_spec(),
        |(graphs, nest)| {
            check_read(&read("workflow", &workflow_json(&graphs, nest)));
        },
    );
}

#[test]
fn fuzz_comfyui_api_graphs_with_instance_paths() {
    let graph = prop::collection::vec(node_spec(), 1..120);
    fuzz("comfyui api instance paths", 300, graph, |nodes| {
        check_read(&read("prompt", &api_json(&nodes)));
    });
}

/// A workflow whose definition `sg{i}` holds `fan` instances of `sg{next(i)}` and a sampler
/// fed through them; the outer graph holds one instance of `sg0` and an encoder.
fn nest(defs: usize, fan: usize, next: impl Fn(usize) -> usize) -> String {
    let sampler = json!({"id": 1, "type": "KSampler", "inputs": [
        {"name": "positive", "type": "CONDITIONING", "link": 1}], "widgets_values": [1]});
    let subgraphs: Vec<Value> = (0..defs)
        .map(|i| {
            let mut nodes = vec![sampler.clone()];
            for k in 0..fan {
                nodes.push(json!({"id": k + 2, "type": format!("sg{}", next(i)), "inputs": [
                    {"name": "positive", "type": "CONDITIONING", "link": 2}]}));
            }
            json!({"id": format!("sg{i}"), "nodes": nodes,
                "inputs": [{"name": "positive", "type": "CONDITIONING"}],
                "outputs": [{"name": "out", "type": "CONDITIONING"}],
                "links": [{"id": 1, "origin_id": 2, "origin_slot": 0, "target_id": 1, "target_slot": 0},
                          {"id": 2, "origin_id": -10, "origin_slot": 0, "target_id": 2, "target_slot": 0},
                          {"id": 3, "origin_id": -10, "origin_slot": 0, "target_id": -20, "target_slot": 0}]})
        })
        .collect();
    json!({"nodes": [
            {"id": 1, "type": "CLIPTextEncode", "widgets_values": ["a lone tree"]},
            {"id": 2, "type": "sg0", "inputs": [{"name": "positive", "type": "CONDITIONING", "link": 1}]}],
        "links": [[1, 1, 0, 2, 0, "CONDITIONING"]],
        "definitions": {"subgraphs": subgraphs}})
    .to_string()
}

#[test]
fn subgraphs_built_to_blow_up_are_read_in_bounded_time() {
    let cases = [
        ("a subgraph holding itself", nest(1, 3, |i| i)),
        ("two subgraphs holding each other", nest(2, 3, |i| 1 - i)),
        (
            "binary fan-out 24 levels deep",
            nest(24, 2, |i| (i + 1).min(23)),
        ),
        ("100 nested definitions", nest(100, 1, |i| (i + 1).min(99))),
    ];
    for (name, workflow) in cases {
        let start = Instant::now();
        let read = read("workflow", &workflow);
        let took = start.elapsed();
        eprintln!("{name}: {:.1} ms", took.as_secs_f64() * 1e3);
        assert!(took < Duration::from_secs(2), "{name}: {took:?}");
        check_read(&read);
        // Every sampler is fed, through the instances, by the outer encoder: the prompt is
        // found, or the graph is reported too complex.
        let found = read.prompt.as_ref().map(|p| p.prompt.as_str());
        let too_complex = read
            .warnings
            .iter()
            .any(|w| w.detail.contains("too complex"));
        assert!(
            found == Some("a lone tree") || too_complex,
            "{name}: {read:?}"
        );
    }
}
