//! Sidecar text files: `NAME.txt` or `NAME.caption` beside `NAME.png` (training captions,
//! prompts saved by batch tools). The text is parsed as A1111 `parameters` when it has their
//! shape; otherwise all of it is the prompt. Used only when the image itself has no prompt. A
//! sidecar that cannot be read, is over [`MAX_TEXT_BYTES`] or is not UTF-8 is skipped with a
//! warning.

use std::io::Read;
use std::path::Path;

use super::{a1111, EmbeddedPrompt, Provenance, Scan, MAX_TEXT_BYTES};

/// Sidecar extensions, in the order they are tried.
const EXTENSIONS: [&str; 2] = ["txt", "caption"];

/// The prompt in the first non-empty sidecar of `image`, if any.
pub(super) fn read_sidecar(image: &Path, scan: &mut Scan) -> Option<EmbeddedPrompt> {
    for ext in EXTENSIONS {
        let side = image.with_extension(ext);
        if side == image {
            continue;
        }
        let name = side
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match read_text(&side) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(detail) => {
                scan.ignored(format!("sidecar {name}"), detail);
                continue;
            }
        };
        let text = text.trim_start_matches('\u{FEFF}');
        let Some(mut found) = a1111::parse_a1111_parameters(text).filter(|f| f.has_text()) else {
            continue;
        };
        found.provenance = Provenance::Sidecar;
        return Some(found.at(name));
    }
    None
}

/// The text of the sidecar at `side`; `None` when there is no such file.
fn read_text(side: &Path) -> Result<Option<String>, String> {
    let meta = match std::fs::metadata(side) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    if meta.len() > MAX_TEXT_BYTES as u64 {
        return Err(format!(
            "{} bytes, over the {MAX_TEXT_BYTES}-byte limit for metadata",
            meta.len()
        ));
    }
    // Read through a limit too: the file may have grown since its size was taken.
    let mut bytes = Vec::new();
    std::fs::File::open(side)
        .and_then(|file| file.take(MAX_TEXT_BYTES as u64).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| format!("not UTF-8 text ({e})"))
}
