//! SwarmUI: a JSON object whose `sui_image_params` holds every generation parameter by its
//! SwarmUI id (`prompt`, `negativeprompt`, `seed`, `steps`, `cfgscale`, `width`, `height`,
//! `model`, `sampler`, `scheduler`, `swarm_version`, ...), stored in the PNG `parameters` text
//! chunk and in EXIF `UserComment` (UTF-16 behind `UNICODE`) of JPEG and WebP (SwarmUI's
//! `docs/Image Metadata Format.md`). Values are often strings even when they are numbers
//! (`"7.0"`), so numeric settings are typed here; `sui_extra_data` and `sui_models` are not
//! generation parameters and are left out.

use serde_json::{Map, Value};

use super::params::{copy_scalars, numbers_from_strings, size_of};
use super::{EmbeddedPrompt, Provenance};

type Detail = String;

/// SwarmUI ids renamed to promptdex's settings names.
const RENAME: [(&str, &str); 2] = [("cfgscale", "cfg_scale"), ("swarm_version", "version")];

/// Settings that are numbers even when SwarmUI writes them as strings.
const NUMERIC: [&str; 5] = ["seed", "steps", "cfg_scale", "width", "height"];

/// The SwarmUI prompt of a JSON object that has `sui_image_params`; `None` when it holds no
/// prompt text, an error when `sui_image_params` is not an object.
pub(super) fn parse_swarm(root: &Map<String, Value>) -> Result<Option<EmbeddedPrompt>, Detail> {
    let params = match root.get("sui_image_params") {
        Some(Value::Object(params)) => params,
        Some(_) => return Err("SwarmUI sui_image_params is not a JSON object".into()),
        None => return Ok(None),
    };
    let text = |key: &str| params.get(key).and_then(Value::as_str);
    let mut found = EmbeddedPrompt::new(Provenance::SwarmUi, text("prompt").unwrap_or(""))
        .negative(text("negativeprompt"));
    let settings = &mut found.parameters;
    copy_scalars(params, settings, &["prompt", "negativeprompt"], &RENAME);
    numbers_from_strings(settings, &NUMERIC);
    if let Some(size) = size_of(settings) {
        settings.insert("size".into(), size);
    }
    Ok(found.has_text().then_some(found))
}
