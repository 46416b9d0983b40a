//! Prompts that Stable Diffusion front-ends embed in image files, read without decoding pixels
//! (except the stealth bits hidden in them, read from pixels the caller decoded anyway).
//!
//! [`read_embedded_prompt`] looks at a file's content (not its extension), reads the metadata
//! that PNG, JPEG or WebP carry, and turns the first prompt it recognises into an
//! [`EmbeddedPrompt`]. When the image carries none, a sidecar `NAME.txt` or `NAME.caption` next
//! to it is used instead.
//!
//! - `png`: walks PNG chunks (CRC-checked, size-limited, `IDAT` skipped unread) and decodes
//!   `tEXt`, `zTXt`, `iTXt` and `eXIf`.
//! - `a1111`: the AUTOMATIC1111 / Forge / stable-diffusion.cpp `parameters` text, also the
//!   content of their EXIF `UserComment` and GIF comment. Public as [`parse_a1111_parameters`].
//! - `a1111_extras`: the structures in its settings (`Hashes`, `Lora hashes`, `TI hashes`,
//!   `Civitai resources`).
//! - `infotext`: any prompt written back as A1111 `parameters` text, public as [`to_infotext`].
//! - `xmp`: Draw Things' XMP packet, read with an XML parser.
//! - `gif`: a GIF's comment extension (A1111 saves its text there).
//! - `comfy`, `comfy_ui`: ComfyUI's API-format `prompt` graph and its UI `workflow`;
//!   `comfy_subgraph` expands the workflow's subgraphs, `comfy_ui_settings` reads its settings.
//! - `invoke`: InvokeAI `invokeai_metadata`, `sd-metadata` and `Dream`.
//! - `novelai`: NovelAI `Description` + `Comment`.
//! - `generic`: JSON `parameters` (Fooocus) and plain `prompt` chunks (Easy Diffusion).
//! - `swarm`: SwarmUI's `sui_image_params` JSON (PNG `parameters`, EXIF `UserComment`).
//! - `exif_data`: JPEG and WebP containers, EXIF `UserComment` (UTF-16 either way round;
//!   A1111 text or Fooocus/SwarmUI JSON, Fooocus's `MakerNote` scheme).
//! - `stealth`: NovelAI's and sd-webui-stealth-pnginfo's text in the pixels' least
//!   significant bits, read by [`Metadata::fill_from_pixels`] from pixels decoded anyway.
//! - `sidecar`: the `.txt` / `.caption` file beside an image.
//! - `params`: the settings map (JSON objects, scalars copied, `size` from width and height).
//! - `text`: Latin-1 or UTF-8 bytes to text, shared by `png` and `exif_data`.
//!
//! In a PNG the first convention that yields a prompt wins, in this order: `parameters` (A1111
//! text, or Fooocus JSON), `invokeai_metadata`, `sd-metadata`, `Dream`, `prompt` (ComfyUI graph,
//! or plain text), NovelAI's `Description`/`Comment`, ComfyUI's `workflow`, Draw Things'
//! `XML:com.adobe.xmp`, then `eXIf`. A GIF's prompt is its first comment extension.
//!
//! - `cap`: holds a prompt to [`MAX_PROMPT_BYTES`](crate::ingest::MAX_PROMPT_BYTES), the limit corpus import uses too.
//!
//! Metadata trouble never loses the image: [`read_metadata`] skips a chunk that is truncated,
//! has a bad CRC or zlib data, holds text over [`MAX_TEXT_BYTES`] or JSON that does not parse,
//! cuts a prompt over [`MAX_PROMPT_BYTES`](crate::ingest::MAX_PROMPT_BYTES), and reports each as a [`MetadataWarning`] naming
//! the file and the chunk. ComfyUI graphs are walked with a visited set and a step budget of
//! [`MAX_GRAPH_STEPS`] per file. [`read_embedded_prompt`] is the strict form: the first
//! unreadable piece is an [`Error::Input`].

mod a1111;
mod a1111_extras;
mod cap;
mod comfy;
mod comfy_subgraph;
mod comfy_ui;
mod comfy_ui_settings;
mod exif_data;
mod generic;
mod gif;
mod infotext;
mod invoke;
mod novelai;
mod params;
mod png;
mod sidecar;
mod stealth;
mod swarm;
mod text;
mod xmp;

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use image::DynamicImage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

pub use a1111::{infotext_fields, parse_a1111_parameters};
pub use infotext::to_infotext;
pub use png::png_text_chunks;

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
    /// NovelAI `Description` and `Comment` (text chunks, or the stealth pixels' JSON).
    NovelAi,
    /// SwarmUI `sui_image_params` JSON (PNG `parameters`, EXIF `UserComment`).
    SwarmUi,
    /// A plain-text `prompt` chunk with sibling chunks per setting (Easy Diffusion).
    PlainPrompt,
    /// EXIF `UserComment` holding A1111 `parameters` text (JPEG, WebP, PNG `eXIf`).
    ExifUserComment,
    /// A `.txt` or `.caption` file next to the image.
    Sidecar,
    /// An `image,prompt` CSV given to `promptdex index --prompts`.
    LabelFile,
    /// Draw Things: the XMP packet of a PNG `iTXt "XML:com.adobe.xmp"` (its `exif:UserComment`
    /// JSON, else its `dc:description` text).
    DrawThings,
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
    /// The settings line exactly as A1111-style text wrote it (with any extension lines after
    /// it), for [`to_infotext`] to give that text back unchanged; `None` for the other
    /// conventions, whose settings [`to_infotext`] writes from `parameters`.
    #[serde(skip)]
    pub settings_line: Option<String>,
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
            settings_line: None,
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

/// How reading a file's metadata went: the prompt found, if any, and every problem met on the
/// way. A problem never stops the reading: the chunk (or EXIF block, or sidecar) at fault is
/// ignored, or an over-long prompt cut, and the rest is read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// The prompt, [`MAX_PROMPT_BYTES`](crate::ingest::MAX_PROMPT_BYTES) at most.
    pub prompt: Option<EmbeddedPrompt>,
    /// What was wrong, in the order met.
    pub warnings: Vec<MetadataWarning>,
}

impl Metadata {
    /// When no prompt was found (in the file's chunks or its sidecar), reads the one hidden in
    /// the least significant bits of `image`, the file's own pixels as
    /// [`decode_pixels`](crate::ingest::decode_pixels) gives them (see `stealth`): NovelAI's
    /// and sd-webui-stealth-pnginfo's. Reading stops at the first pixels of an image without
    /// it; the prompt is held to the shared limit and a payload that cannot be read is a
    /// warning naming `path`.
    pub fn fill_from_pixels(&mut self, path: &Path, image: &DynamicImage) {
        if self.prompt.is_some() {
            return;
        }
        let mut scan = Scan::new();
        let prompt =
            stealth::read_stealth(image, &mut scan).map(|found| cap::cap(found, &mut scan));
        let found = scan.finish(path, prompt);
        self.prompt = found.prompt;
        self.warnings.extend(found.warnings);
    }
}

/// A problem with one piece of a file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataWarning {
    /// The file.
    pub path: PathBuf,
    /// The piece at fault: `tEXt "workflow"`, `WebP EXIF`, the sidecar's name; empty when
    /// the file as a whole could not be read as a PNG, JPEG or WebP.
    pub location: String,
    /// What is wrong with it.
    pub detail: String,
    /// What became of it.
    pub effect: Effect,
}

/// What a metadata problem did to the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The piece could not be read and was skipped.
    Ignored,
    /// The prompt was read but cut to [`MAX_PROMPT_BYTES`](crate::ingest::MAX_PROMPT_BYTES) (or over-long settings dropped).
    Cut,
}

impl std::fmt::Display for MetadataWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        if !self.location.is_empty() {
            write!(f, "{}: ", self.location)?;
        }
        write!(f, "{}", self.detail)
    }
}

/// A warning before the file's path is known.
pub(super) struct Trouble {
    location: String,
    detail: String,
    effect: Effect,
}

/// What one file's reading carries along: its troubles, and the work it may still do.
pub(super) struct Scan {
    troubles: Vec<Trouble>,
    steps_left: usize,
}

/// Steps (graph nodes visited, links followed) allowed for the whole metadata of one file.
/// A real ComfyUI graph needs a few thousand at most.
pub const MAX_GRAPH_STEPS: usize = 200_000;

impl Scan {
    fn new() -> Self {
        Scan {
            troubles: Vec::new(),
            steps_left: MAX_GRAPH_STEPS,
        }
    }

    /// Notes that `location` was skipped because of `detail`.
    pub(super) fn ignored(&mut self, location: impl Into<String>, detail: impl Into<String>) {
        self.troubles.push(Trouble {
            location: location.into(),
            detail: detail.into(),
            effect: Effect::Ignored,
        });
    }

    fn cut(&mut self, location: &str, detail: String) {
        self.troubles.push(Trouble {
            location: location.to_string(),
            detail,
            effect: Effect::Cut,
        });
    }

    /// Spends one step of the file's budget; `false` once it is spent.
    pub(super) fn step(&mut self) -> bool {
        match self.steps_left.checked_sub(1) {
            Some(left) => {
                self.steps_left = left;
                true
            }
            None => false,
        }
    }

    /// Whether the budget is spent.
    pub(super) fn exhausted(&self) -> bool {
        self.steps_left == 0
    }

    fn finish(self, path: &Path, prompt: Option<EmbeddedPrompt>) -> Metadata {
        let warnings = self
            .troubles
            .into_iter()
            .map(|t| MetadataWarning {
                path: path.to_path_buf(),
                location: t.location,
                detail: t.detail,
                effect: t.effect,
            })
            .collect();
        Metadata { prompt, warnings }
    }
}

/// Reads the prompt embedded in the image at `path`, or else in its sidecar text file, with
/// every problem met as a warning.
///
/// The format is found from the content: PNG (text chunks and `eXIf`), JPEG and WebP (EXIF),
/// GIF (comment extension). Embedded metadata wins over a sidecar. A chunk that is corrupt,
/// over [`MAX_TEXT_BYTES`] or not the JSON it should be is skipped with a warning naming it; a prompt over
/// [`MAX_PROMPT_BYTES`](crate::ingest::MAX_PROMPT_BYTES) is cut at a character boundary with a warning. A file that is not a
/// PNG, JPEG, WebP or GIF gives a warning too (deciding whether it is an image is the pixel
/// decoder's job). The only error: the file cannot be opened ([`Error::Io`]).
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let mut scan = Scan::new();
    let mut prompt = read_image(path, &mut scan)?;
    if prompt.is_none() {
        prompt = sidecar::read_sidecar(path, &mut scan);
    }
    let prompt = prompt.map(|found| cap::cap(found, &mut scan));
    Ok(scan.finish(path, prompt))
}

/// [`read_metadata`] for a file whose content is already in memory (indexing reads each
/// file once, to hash and decode it): the prompt from `bytes`, else from the sidecar next to
/// `path`. Never fails.
pub fn read_metadata_of(path: &Path, bytes: &[u8]) -> Metadata {
    let mut scan = Scan::new();
    let len = bytes.len() as u64;
    let mut prompt = read_from(&mut std::io::Cursor::new(bytes), len, &mut scan);
    if prompt.is_none() {
        prompt = sidecar::read_sidecar(path, &mut scan);
    }
    let prompt = prompt.map(|found| cap::cap(found, &mut scan));
    scan.finish(path, prompt)
}

/// [`read_metadata`] for an image held in memory (an upload), without the sidecar; `name`
/// names it in the warnings. Never fails.
pub fn read_metadata_bytes(name: &str, bytes: &[u8]) -> Metadata {
    let path = Path::new(name);
    let mut scan = Scan::new();
    let len = bytes.len() as u64;
    let prompt = read_from(&mut std::io::Cursor::new(bytes), len, &mut scan)
        .map(|found| cap::cap(found, &mut scan));
    scan.finish(path, prompt)
}

/// Reads the prompt embedded in the image at `path`, or else in its sidecar, strictly: any
/// metadata problem that made a piece unreadable is an error, for checking files.
///
/// `Ok(None)`: a readable image with no prompt and no sidecar. Errors: the file cannot be
/// opened ([`Error::Io`]); it is not a PNG, JPEG or WebP, is truncated, or its metadata is
/// corrupt or over [`MAX_TEXT_BYTES`] ([`Error::Input`] naming the file and the chunk). An
/// over-long prompt is cut, as by [`read_metadata`].
pub fn read_embedded_prompt(path: &Path) -> Result<Option<EmbeddedPrompt>> {
    strict(read_metadata(path)?)
}

/// [`read_embedded_prompt`] for an image held in memory, without the sidecar; `name` names
/// it in errors.
pub fn read_embedded_prompt_bytes(name: &str, bytes: &[u8]) -> Result<Option<EmbeddedPrompt>> {
    strict(read_metadata_bytes(name, bytes))
}

/// The prompt, or the first problem that made a piece unreadable as an [`Error::Input`].
fn strict(read: Metadata) -> Result<Option<EmbeddedPrompt>> {
    match read
        .warnings
        .into_iter()
        .find(|w| w.effect == Effect::Ignored)
    {
        Some(w) => {
            let detail = match w.location.is_empty() {
                true => w.detail,
                false => format!("{}: {}", w.location, w.detail),
            };
            Err(Error::input(w.path, detail))
        }
        None => Ok(read.prompt),
    }
}

/// What the first bytes of a file say it is.
enum Kind {
    Png,
    Jpeg,
    Webp,
    Gif,
}

fn read_image(path: &Path, scan: &mut Scan) -> Result<Option<EmbeddedPrompt>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        scan.ignored("", "is a directory, not an image");
        return Ok(None);
    }
    let mut reader = BufReader::with_capacity(1 << 16, file);
    Ok(read_from(&mut reader, meta.len(), scan))
}

/// Sniffs the format of the `len` bytes in `reader` and reads their prompt.
fn read_from<R: std::io::BufRead + Seek>(
    reader: &mut R,
    len: u64,
    scan: &mut Scan,
) -> Option<EmbeddedPrompt> {
    let mut head = Vec::with_capacity(12);
    let sniffed = (&mut *reader)
        .take(12)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|_| sniff(&head))
        // The sniffed bytes are part of the format: start again from the top.
        .and_then(|kind| {
            reader
                .rewind()
                .map_err(|e| format!("cannot read: {e}"))
                .map(|_| kind)
        });
    match sniffed {
        Ok(Kind::Png) => png::read_png(reader, len, scan).into_prompt(scan),
        Ok(Kind::Jpeg) => exif_data::read_jpeg(reader, scan),
        Ok(Kind::Webp) => exif_data::read_webp(reader, len, scan),
        Ok(Kind::Gif) => gif::read_gif(reader, scan),
        Err(detail) => {
            scan.ignored("", detail);
            None
        }
    }
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
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Ok(Kind::Gif)
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        Err("not an image: the file starts with text, not a PNG, JPEG or WebP signature".into())
    } else {
        Err("not a PNG, JPEG or WebP image (unknown signature)".into())
    }
}
