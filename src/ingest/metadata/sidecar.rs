//! Sidecar text files: `NAME.txt` or `NAME.caption` beside `NAME.png` (training captions,
//! prompts saved by batch tools). The text is parsed as A1111 `parameters` when it has their
//! shape; otherwise all of it is the prompt. Used only when the image itself has no prompt.

use std::path::Path;

use super::{a1111, EmbeddedPrompt, Provenance, MAX_TEXT_BYTES};
use crate::{Error, Result};

/// Sidecar extensions, in the order they are tried.
const EXTENSIONS: [&str; 2] = ["txt", "caption"];

/// The prompt in the first non-empty sidecar of `image`, if any.
pub(super) fn read_sidecar(image: &Path) -> Result<Option<EmbeddedPrompt>> {
    for ext in EXTENSIONS {
        let side = image.with_extension(ext);
        if side == image {
            continue;
        }
        let meta = match std::fs::metadata(&side) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&side, e)),
        };
        if meta.len() > MAX_TEXT_BYTES as u64 {
            return Err(Error::input(
                &side,
                format!(
                    "sidecar of {} bytes, over the {MAX_TEXT_BYTES}-byte limit",
                    meta.len()
                ),
            ));
        }
        let bytes = std::fs::read(&side).map_err(|e| Error::io(&side, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::input(&side, format!("sidecar is not UTF-8 text ({e})")))?;
        let text = text.trim_start_matches('\u{FEFF}');
        let Some(mut found) = a1111::parse_a1111_parameters(text).filter(|f| f.has_text()) else {
            continue;
        };
        found.provenance = Provenance::Sidecar;
        let name = side
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(Some(found.at(name)));
    }
    Ok(None)
}
