//! Prompts that Stable Diffusion front-ends embed in image files, read without decoding pixels.
//!
//! [`read_embedded_prompt`] looks at a file's content (not its extension), reads the metadata
//! that PNG, JPEG or WebP carry, and turns the first prompt it recognises into an
//! [`EmbeddedPrompt`]. When the image carries none, a sidecar `NAME.txt` or `NAME.caption` next
//! to it is used instead.
//!
//! - `png`: walks PNG chunks (CRC-checked, size-limited, `IDAT` skipped unread) and decodes
//!   `tEXt`, `zTXt`, `iTXt` and `eXIf`.
//! - `a1111`: the AUTOMATIC1111 / Forge / stable-diffusion.cpp `parameters` text, also the
//!   content of their EXIF `UserComment`. Public as [`parse_a1111_parameters`].
//! - `comfy`, `comfy_ui`: ComfyUI's API-format `prompt` graph and its UI `workflow`.
//! - `invoke`: InvokeAI `invokeai_metadata`, `sd-metadata` and `Dream`.
//! - `novelai`: NovelAI `Description` + `Comment`.
//! - `generic`: JSON `parameters` (Fooocus) and plain `prompt` chunks (Easy Diffusion).
//! - `exif_data`: JPEG and WebP containers, EXIF `UserComment` (UTF-16 either way round).
//! - `sidecar`: the `.txt` / `.caption` file beside an image.
//!
//! In a PNG the first convention that yields a prompt wins, in this order: `parameters` (A1111
//! text, or Fooocus JSON), `invokeai_metadata`, `sd-metadata`, `Dream`, `prompt` (ComfyUI graph,
//! or plain text), NovelAI's `Description`/`Comment`, ComfyUI's `workflow`, then `eXIf`.
//!
//! Every problem with a file (truncated, bad CRC or zlib data, text over
//! [`MAX_TEXT_BYTES`], not an image at all) is an [`Error::Input`] naming the file.

mod a1111;
mod comfy;
mod comfy_ui;
mod exif_data;
mod generic;
mod invoke;
mod novelai;
mod png;
mod sidecar;

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

pub use a1111::parse_a1111_parameters;

/// Largest text accepted from one chunk, EXIF block or sidecar (compressed or decompressed).
/// Real prompts and even large ComfyUI workflows stay far below; more means a broken file.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// Which convention the prompt was stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// AUTOMATIC1111 / Forge / stable-diffusion.cpp `parameters` text (PNG text chunk).
    A1111Parameters,
    /// A JSON object with `prompt` / `negative_prompt` in `parameters` (Fooocus).
    JsonParameters,
    /// InvokeAI 3+ `invokeai_metadata` JSON.
    InvokeAi,
    /// InvokeAI 2 `sd-metadata` JSON.
    InvokeAiLegacy,
    /// InvokeAI 1-2 `Dream` command line.
    InvokeAiDream,
    /// ComfyUI API-format `prompt` graph.
    ComfyUi,
    /// ComfyUI UI-format `workflow` only (best effort).
    ComfyUiWorkflow,
    /// NovelAI `Description` and `Comment`.
    NovelAi,
    /// A plain-text `prompt` chunk with sibling chunks per setting (Easy Diffusion).
    PlainPrompt,
    /// EXIF `UserComment` holding A1111 `parameters` text (JPEG, WebP, PNG `eXIf`).
    ExifUserComment,
    /// A `.txt` or `.caption` file next to the image.
    Sidecar,
    /// An `image,prompt` CSV given to `promptdex index --prompts`.
    LabelFile,
}

/// A prompt found in (or beside) an image file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedPrompt {
    /// The positive prompt, trimmed; lines of a multi-line prompt are kept.
    pub prompt: String,
    /// The negative prompt, when one was stored and is not empty.
    pub negative_prompt: Option<String>,
    /// Generation settings with snake_case keys (`steps`, `sampler`, `cfg_scale`, `seed`,
    /// `size`, `width`, `height`, `model`, `model_hash`, ...): numbers as JSON numbers.
    pub parameters: Map<String, Value>,
    /// The convention it was stored in.
    pub provenance: Provenance,
    /// Where exactly, e.g. `tEXt "parameters"`, `EXIF UserComment`, the sidecar's file name;
    /// empty for text handed to a parser directly.
    pub location: String,
}

impl EmbeddedPrompt {
    /// A prompt from `provenance` with no negative prompt or settings.
    pub fn new(provenance: Provenance, prompt: impl Into<String>) -> Self {
        EmbeddedPrompt {
            prompt: prompt.into().trim().to_string(),
            negative_prompt: None,
            parameters: Map::new(),
            provenance,
            location: String::new(),
        }
    }

    fn negative(mut self, negative: Option<&str>) -> Self {
        self.negative_prompt = negative
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        self
    }

    fn at(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// Whether there is any prompt text at all.
    fn has_text(&self) -> bool {
        !self.prompt.is_empty() || self.negative_prompt.is_some()
    }
}

/// Reads the prompt embedded in the image at `path`, or else in its sidecar text file.
///
/// The format is found from the content: PNG (text chunks and `eXIf`), JPEG and WebP (EXIF).
/// Embedded metadata wins over a sidecar. `Ok(None)`: a readable image with no prompt and no
/// sidecar. Errors: the file cannot be opened ([`Error::Io`]); it is not a PNG, JPEG or WebP,
/// is truncated, or its metadata is corrupt or over [`MAX_TEXT_BYTES`] ([`Error::Input`]).
pub fn read_embedded_prompt(path: &Path) -> Result<Option<EmbeddedPrompt>> {
    if let Some(found) = read_image(path)? {
        return Ok(Some(found));
    }
    sidecar::read_sidecar(path)
}

/// What the first bytes of a file say it is.
enum Kind {
    Png,
    Jpeg,
    Webp,
}

/// Reads the prompt embedded in an image held in memory (an upload); `name` names it in
/// errors. Like [`read_embedded_prompt`] without the sidecar: `Ok(None)` is an image with no
/// prompt; a non-image, a truncated file or corrupt metadata is an [`Error::Input`].
pub fn read_embedded_prompt_bytes(name: &str, bytes: &[u8]) -> Result<Option<EmbeddedPrompt>> {
    let path = Path::new(name);
    read_from(path, &mut std::io::Cursor::new(bytes), bytes.len() as u64)
}

fn read_image(path: &Path) -> Result<Option<EmbeddedPrompt>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::input(path, "is a directory, not an image"));
    }
    let mut reader = BufReader::with_capacity(1 << 16, file);
    read_from(path, &mut reader, meta.len())
}

/// Sniffs the format of the `len` bytes in `reader` and reads their prompt; `path` names them.
fn read_from<R: std::io::BufRead + Seek>(
    path: &Path,
    reader: &mut R,
    len: u64,
) -> Result<Option<EmbeddedPrompt>> {
    let mut head = Vec::with_capacity(12);
    (&mut *reader)
        .take(12)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    let kind = sniff(&head).map_err(|detail| Error::input(path, detail))?;
    // The sniffed bytes are part of the format: start again from the top.
    reader.rewind().map_err(|e| Error::io(path, e))?;
    let found = match kind {
        Kind::Png => png::read_png(reader, len).and_then(|chunks| chunks.into_prompt()),
        Kind::Jpeg => exif_data::read_jpeg(reader),
        Kind::Webp => exif_data::read_webp(reader, len),
    };
    found.map_err(|detail| Error::input(path, detail))
}

fn sniff(head: &[u8]) -> std::result::Result<Kind, String> {
    if head.is_empty() {
        return Err("the file is empty, not an image".into());
    }
    if head.len() < 12 && (png::SIGNATURE.starts_with(head) || head.starts_with(&png::SIGNATURE)) {
        return Err(format!(
            "truncated: the file is only {} bytes long",
            head.len()
        ));
    }
    if head.starts_with(&png::SIGNATURE) {
        Ok(Kind::Png)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(Kind::Jpeg)
    } else if head.len() == 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Ok(Kind::Webp)
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        Err("not an image: the file starts with text, not a PNG, JPEG or WebP signature".into())
    } else {
        Err("not a PNG, JPEG or WebP image (unknown signature)".into())
    }
}

/// Copies the scalar members of a JSON object (numbers, strings, booleans) into `out`,
/// skipping `skip` and renaming per `rename`; a key already in `out` is kept.
fn copy_scalars(
    src: &Map<String, Value>,
    out: &mut Map<String, Value>,
    skip: &[&str],
    rename: &[(&str, &str)],
) {
    for (key, value) in src {
        if skip.contains(&key.as_str()) || !is_scalar(value) {
            continue;
        }
        let key = rename
            .iter()
            .find(|(from, _)| from == key)
            .map_or(key.as_str(), |(_, to)| to);
        if !out.contains_key(key) {
            out.insert(key.to_string(), value.clone());
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::Number(_) | Value::Bool(_))
        || value.as_str().is_some_and(|s| !s.is_empty())
}

/// Parses `text` as a JSON object, naming `what` in the error.
fn json_object(text: &str, what: &str) -> std::result::Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("{what} is JSON but not an object")),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}
