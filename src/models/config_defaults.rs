//! What the checkpoint configs (`config.json`) share: serde defaults (the fields that
//! `transformers` leaves out when they hold its default value) and reading one.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// `N`, as a serde default: `#[serde(default = "n::<768>")]`.
pub const fn n<const N: usize>() -> usize {
    N
}

/// Reads and parses model `name`'s config at `path`; a file that cannot be read, or that is
/// not a `kind` config (`"CLIP"`, `"BLIP"`), is an [`Error::Model`] naming it.
pub fn read_config<T: DeserializeOwned>(name: &str, path: &Path, kind: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::model(name, format!("{}: cannot read: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::model(
            name,
            format!("{}: not a {kind} config: {e}", path.display()),
        )
    })
}
