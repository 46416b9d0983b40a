//! The settings of a UI-format ComfyUI workflow: seed, steps, CFG, sampler, scheduler,
//! denoise, size and model, read from the widgets of the sampler and of the nodes it reads
//! from (noise, guider, sampler select, scheduler, latent, loader), nearest first, never
//! crossing into the conditioning (text) side.
//!
//! A widget's value is, in this order: a value promoted onto the subgraph instance the node
//! lies in, the value fed into the widget's input (a primitive node, or a widget on the
//! instance), the node's own `widgets_values` at the widget's position.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

use super::comfy::is_conditioning_input;
use super::comfy_subgraph::{node_inputs, node_type, At, Source};
use super::comfy_ui::Walk;
use super::params::size_of;

/// A setting widget: (position in `widgets_values`, parameter, widget name).
type Setting = (usize, &'static str, &'static str);

/// The setting widgets of the nodes that hold settings, in `widgets_values` order (a seed is
/// followed by its "control after generate" value).
const SETTING_WIDGETS: [(&str, &[Setting]); 13] = [
    (
        "KSampler",
        &[
            (0, "seed", "seed"),
            (2, "steps", "steps"),
            (3, "cfg_scale", "cfg"),
            (4, "sampler", "sampler_name"),
            (5, "scheduler", "scheduler"),
            (6, "denoise", "denoise"),
        ],
    ),
    (
        "KSamplerAdvanced",
        &[
            (1, "seed", "noise_seed"),
            (3, "steps", "steps"),
            (4, "cfg_scale", "cfg"),
            (5, "sampler", "sampler_name"),
            (6, "scheduler", "scheduler"),
        ],
    ),
    (
        "SamplerCustom",
        &[(1, "seed", "noise_seed"), (3, "cfg_scale", "cfg")],
    ),
    ("RandomNoise", &[(0, "seed", "noise_seed")]),
    (
        "BasicScheduler",
        &[
            (0, "scheduler", "scheduler"),
            (1, "steps", "steps"),
            (2, "denoise", "denoise"),
        ],
    ),
    ("KSamplerSelect", &[(0, "sampler", "sampler_name")]),
    ("CFGGuider", &[(0, "cfg_scale", "cfg")]),
    ("DualCFGGuider", &[(0, "cfg_scale", "cfg_conds")]),
    (
        "EmptyLatentImage",
        &[(0, "width", "width"), (1, "height", "height")],
    ),
    (
        "EmptySD3LatentImage",
        &[(0, "width", "width"), (1, "height", "height")],
    ),
    ("CheckpointLoaderSimple", &[(0, "model", "ckpt_name")]),
    ("UNETLoader", &[(0, "model", "unet_name")]),
    ("UnetLoaderGGUF", &[(0, "model", "unet_name")]),
];

/// Farthest a setting is looked for from the sampler, in links.
const MAX_SETTINGS_DEPTH: usize = 16;

/// Whether `value` has the kind `parameter` takes: text for names, a number otherwise.
fn fits(parameter: &str, value: &Value) -> bool {
    match parameter {
        "sampler" | "scheduler" | "model" => value.as_str().is_some_and(|s| !s.is_empty()),
        _ => value.is_number(),
    }
}

/// Fills `params` from the sampler `root` and the nodes it reads from, breadth first.
pub(super) fn gather_settings<'a>(
    walk: &mut Walk<'_, 'a, '_>,
    root: At<'a>,
    params: &mut Map<String, Value>,
) {
    let mut queue = VecDeque::from([(root, 0)]);
    let mut seen = HashSet::new();
    while let Some((at, depth)) = queue.pop_front() {
        if depth > MAX_SETTINGS_DEPTH || !walk.scan.step() || !seen.insert(walk.graph.key(at)) {
            continue;
        }
        let known = SETTING_WIDGETS
            .iter()
            .find(|(t, _)| *t == node_type(at.node));
        for &(index, parameter, widget) in known.map_or(&[][..], |(_, s)| *s) {
            if params.contains_key(parameter) {
                continue;
            }
            if let Some(value) =
                widget_value(walk, at, index, widget).filter(|v| fits(parameter, v))
            {
                params.insert(parameter.to_string(), value);
            }
        }
        let links: Vec<String> = node_inputs(at.node)
            .filter(|(name, kind, _)| {
                let text_side = matches!(*name, "positive" | "negative")
                    || *kind == "CONDITIONING"
                    || is_conditioning_input(name);
                !text_side
            })
            .filter_map(|(_, _, link)| link)
            .collect();
        for link in links {
            if let Some(Source::Node(next, _)) = walk.graph.link(at.frame, &link, walk.scan) {
                queue.push_back((next, depth + 1));
            }
        }
    }
    if let Some(size) = size_of(params) {
        params.entry("size").or_insert(size);
    }
}

/// The value of widget `widget` (at `index`) of `at`; see the module documentation.
fn widget_value<'a>(
    walk: &mut Walk<'_, 'a, '_>,
    at: At<'a>,
    index: usize,
    widget: &str,
) -> Option<Value> {
    let promoted = walk.graph.promoted(at, |name| name == widget);
    if let Some((_, value)) = promoted.first() {
        return Some((*value).clone());
    }
    let fed = node_inputs(at.node).any(|(name, _, link)| name == widget && link.is_some());
    if fed {
        match walk.graph.input(at, widget, walk.scan) {
            Some(Source::Value(value)) => return Some(value.clone()),
            Some(Source::Node(primitive, _)) => {
                let values = primitive
                    .node
                    .get("widgets_values")
                    .and_then(Value::as_array);
                if let Some(first) = values.and_then(|v| v.first()) {
                    return Some(first.clone());
                }
            }
            None => {}
        }
    }
    let values = at.node.get("widgets_values").and_then(Value::as_array)?;
    values.get(index).cloned()
}
