//! PNG chunks: the text (`tEXt`, `zTXt`, `iTXt`) and `eXIf` chunks of a file, read without
//! touching the pixels.
//!
//! The chunk list is walked from the signature to `IEND`; `IDAT` (and any other chunk too big
//! to be metadata) is skipped with a seek, every other chunk is read and its CRC checked. Text
//! chunks over [`MAX_TEXT_BYTES`], compressed or not, with a bad CRC or undecodable, are
//! skipped with a warning; a chunk list that breaks off ends the walk with one. `tEXt`/`zTXt` are Latin-1 by
//! the specification, but several generators (stable-diffusion.cpp among them) write UTF-8
//! there: text that is valid UTF-8 is taken as UTF-8, anything else as Latin-1, so these
//! chunks never fail on encoding. `iTXt` is UTF-8 by definition and invalid UTF-8 is an error.

use std::io::{BufRead, Read, Seek};

use flate2::read::ZlibDecoder;

use super::text::{latin1, latin1_or_utf8};
use super::{a1111, comfy, comfy_ui, exif_data, generic, invoke, novelai, xmp};
use super::{EmbeddedPrompt, Scan, MAX_TEXT_BYTES};

/// The eight bytes every PNG starts with.
pub(super) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];

/// All text chunks together may hold at most this much.
const MAX_TOTAL_TEXT: usize = 16 * MAX_TEXT_BYTES;

/// One decoded text chunk.
pub(super) struct TextChunk {
    /// `tEXt`, `zTXt` or `iTXt`.
    pub kind: &'static str,
    pub keyword: String,
    pub text: String,
}

/// The metadata of one PNG.
pub(super) struct PngMetadata {
    pub texts: Vec<TextChunk>,
    pub exif: Option<Vec<u8>>,
}

type Detail = String;

/// A parser of one chunk's text.
type Parser = fn(&str) -> Result<Option<EmbeddedPrompt>, Detail>;

/// Walks the chunks of a PNG of `file_len` bytes, `reader` positioned at its start. A chunk
/// that cannot be read is noted in `scan` and skipped; a broken chunk list ends the walk with
/// a note, keeping what was read before it.
pub(super) fn read_png<R: BufRead + Seek>(
    reader: &mut R,
    file_len: u64,
    scan: &mut Scan,
) -> PngMetadata {
    let mut meta = PngMetadata {
        texts: Vec::new(),
        exif: None,
    };
    if let Err(detail) = walk(reader, file_len, &mut meta, scan) {
        scan.ignored("", detail);
    }
    meta
}

/// The text chunks of the PNG in `bytes` as keyword and text, in file order, within the same
/// limits as the metadata reading; a chunk that cannot be read is left out, and a file that is
/// not a PNG has none.
pub fn png_text_chunks(bytes: &[u8]) -> Vec<(String, String)> {
    let mut cursor = std::io::Cursor::new(bytes);
    let meta = read_png(&mut cursor, bytes.len() as u64, &mut Scan::new());
    meta.texts
        .into_iter()
        .map(|chunk| (chunk.keyword, chunk.text))
        .collect()
}

/// The walk itself; an `Err` is a chunk list that cannot be followed further.
fn walk<R: BufRead + Seek>(
    reader: &mut R,
    file_len: u64,
    meta: &mut PngMetadata,
    scan: &mut Scan,
) -> Result<(), Detail> {
    let mut signature = [0u8; 8];
    read_exact(reader, &mut signature, "signature")?;
    if signature != SIGNATURE {
        return Err("not a PNG: bad signature".into());
    }
    let mut total_text = 0usize;
    let mut pos = SIGNATURE.len() as u64;
    loop {
        if pos == file_len {
            return Err("truncated: the file ends before the IEND chunk".into());
        }
        let mut header = [0u8; 8];
        read_exact(reader, &mut header, "chunk header")?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let name = String::from_utf8_lossy(&kind).into_owned();
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(format!(
                "corrupt chunk at byte {pos}: type {kind:02x?} is not a PNG chunk type"
            ));
        }
        if len > 0x7FFF_FFFF {
            return Err(format!(
                "corrupt {name} chunk at byte {pos}: length {len} over 2^31-1"
            ));
        }
        let end = pos + 12 + u64::from(len);
        if end > file_len {
            return Err(format!(
                "truncated: {name} chunk at byte {pos} needs {len} bytes of data but the file ends at byte {file_len}"
            ));
        }
        if pos == SIGNATURE.len() as u64 && &kind != b"IHDR" {
            return Err(format!("corrupt PNG: the first chunk is {name}, not IHDR"));
        }
        let is_text = matches!(&kind, b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf");
        let len = len as usize;
        if &kind == b"IDAT" || len > MAX_TEXT_BYTES {
            let mut skipped = 0;
            if is_text {
                // Only the keyword is read, to say which chunk is skipped.
                let mut head = vec![0u8; len.min(80)];
                read_exact(reader, &mut head, &name)?;
                skipped = head.len();
                scan.ignored(
                    chunk_name(&kind, &head, pos),
                    format!("{len} bytes, over the {MAX_TEXT_BYTES}-byte limit for metadata"),
                );
            }
            reader
                .seek_relative((len - skipped) as i64 + 4)
                .map_err(|e| format!("cannot skip {name} chunk at byte {pos}: {e}"))?;
            pos = end;
            continue;
        }
        let mut data = vec![0u8; len];
        read_exact(reader, &mut data, &name)?;
        let mut crc = [0u8; 4];
        read_exact(reader, &mut crc, &name)?;
        let at = pos;
        pos = end;
        let mut hasher = flate2::Crc::new();
        hasher.update(&kind);
        hasher.update(&data);
        if hasher.sum() != u32::from_be_bytes(crc) {
            scan.ignored(chunk_name(&kind, &data, at), "CRC mismatch");
            continue;
        }
        match &kind {
            b"IEND" => return Ok(()),
            b"eXIf" => meta.exif = Some(data),
            b"tEXt" | b"zTXt" | b"iTXt" => match decode_text(&kind, &data) {
                Err(e) => scan.ignored(chunk_name(&kind, &data, at), e),
                Ok(chunk) if total_text + chunk.text.len() > MAX_TOTAL_TEXT => scan.ignored(
                    format!("{} {:?}", chunk.kind, chunk.keyword),
                    format!("text chunks hold over {MAX_TOTAL_TEXT} bytes in all"),
                ),
                Ok(chunk) => {
                    total_text += chunk.text.len();
                    meta.texts.push(chunk);
                }
            },
            _ => {}
        }
    }
}

/// How a chunk is named in a warning: its type and keyword when it has one, else its type and
/// where it starts.
fn chunk_name(kind: &[u8; 4], data: &[u8], pos: u64) -> String {
    let name = String::from_utf8_lossy(kind);
    match split_nul(data) {
        Some((keyword, _)) if (1..=79).contains(&keyword.len()) && kind != b"eXIf" => {
            format!("{name} {:?}", latin1(keyword))
        }
        _ => format!("{name} chunk at byte {pos}"),
    }
}

fn read_exact<R: Read>(reader: &mut R, buf: &mut [u8], what: &str) -> Result<(), Detail> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("truncated: the file ends inside the {what}"),
        _ => format!("cannot read the {what}: {e}"),
    })
}

fn decode_text(kind: &[u8; 4], data: &[u8]) -> Result<TextChunk, Detail> {
    let (keyword, rest) = split_nul(data).ok_or("no NUL after the keyword")?;
    if keyword.is_empty() || keyword.len() > 79 {
        return Err(format!(
            "keyword of {} bytes (1 to 79 allowed)",
            keyword.len()
        ));
    }
    let keyword = latin1(keyword);
    let (kind, text) = match kind {
        b"tEXt" => ("tEXt", latin1_or_utf8(rest)),
        b"zTXt" => {
            let (&method, compressed) = rest.split_first().ok_or("no compression method")?;
            if method != 0 {
                return Err(format!("{keyword:?}: unknown compression method {method}"));
            }
            ("zTXt", latin1_or_utf8(&inflate(compressed, &keyword)?))
        }
        _ => {
            let [flag, method, rest @ ..] = rest else {
                return Err(format!("{keyword:?}: no compression flag"));
            };
            let (_language, rest) = split_nul(rest).ok_or("no NUL after the language tag")?;
            let (_translated, raw) =
                split_nul(rest).ok_or("no NUL after the translated keyword")?;
            let bytes = match (flag, method) {
                (0, _) => raw.to_vec(),
                (1, 0) => inflate(raw, &keyword)?,
                _ => {
                    return Err(format!(
                        "{keyword:?}: unknown compression flag {flag} method {method}"
                    ))
                }
            };
            let text = String::from_utf8(bytes)
                .map_err(|e| format!("{keyword:?}: text is not valid UTF-8 ({e})"))?;
            ("iTXt", text)
        }
    };
    Ok(TextChunk {
        kind,
        keyword,
        text,
    })
}

fn split_nul(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == 0)?;
    Some((&data[..at], &data[at + 1..]))
}

/// zlib-decompresses at most [`MAX_TEXT_BYTES`].
fn inflate(compressed: &[u8], keyword: &str) -> Result<Vec<u8>, Detail> {
    let mut out = Vec::new();
    ZlibDecoder::new(compressed)
        .take(MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{keyword:?}: bad zlib data ({e})"))?;
    if out.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{keyword:?}: decompresses to over the {MAX_TEXT_BYTES}-byte limit"
        ));
    }
    Ok(out)
}

impl PngMetadata {
    /// The text of the first chunk named `keyword` (ASCII case ignored).
    fn get(&self, keyword: &str) -> Option<&TextChunk> {
        self.texts
            .iter()
            .find(|c| c.keyword.eq_ignore_ascii_case(keyword))
    }

    fn text(&self, keyword: &str) -> Option<&str> {
        self.get(keyword).map(|c| c.text.as_str())
    }

    /// Where a chunk is, for the prompt's location and for warnings: `tEXt "parameters"`.
    fn location(&self, keyword: &str) -> String {
        self.get(keyword).map_or_else(
            || format!("{keyword:?}"),
            |chunk| format!("{} {:?}", chunk.kind, chunk.keyword),
        )
    }

    /// The prompt parsed from chunk `keyword`; a parse failure is noted in `scan`.
    fn attempt(
        &self,
        scan: &mut Scan,
        keyword: &str,
        parsed: Result<Option<EmbeddedPrompt>, Detail>,
    ) -> Option<EmbeddedPrompt> {
        match parsed {
            Ok(found) => found.map(|f| f.at(self.location(keyword))),
            Err(detail) => {
                scan.ignored(self.location(keyword), detail);
                None
            }
        }
    }

    /// The prompt, trying each convention from the most to the least specific. A chunk whose
    /// content does not parse is noted in `scan` and the next convention is tried.
    pub(super) fn into_prompt(self, scan: &mut Scan) -> Option<EmbeddedPrompt> {
        if let Some(text) = self.text("parameters") {
            let parsed = if generic::looks_like_json(text) {
                generic::parse_json_parameters(text)
            } else {
                Ok(a1111::parse_a1111_parameters(text))
            };
            if let Some(found) = self.attempt(scan, "parameters", parsed) {
                return Some(found);
            }
        }
        let formats: [(&str, Parser); 3] = [
            ("invokeai_metadata", invoke::parse_invokeai_metadata),
            ("sd-metadata", invoke::parse_sd_metadata),
            ("Dream", invoke::parse_dream),
        ];
        for (keyword, parse) in formats {
            if let Some(text) = self.text(keyword) {
                if let Some(found) = self.attempt(scan, keyword, parse(text)) {
                    return Some(found);
                }
            }
        }
        if let Some(text) = self.text("prompt") {
            let parsed = if generic::looks_like_json(text) {
                comfy::parse_prompt_graph(text, scan)
            } else {
                Ok(generic::parse_plain_prompt(text, |k| self.text(k)))
            };
            if let Some(found) = self.attempt(scan, "prompt", parsed) {
                return Some(found);
            }
        }
        let parsed = novelai::parse_novelai(
            self.text("Description"),
            self.text("Comment"),
            self.text("Software"),
            self.text("Source"),
        );
        let key = match self.get("Description") {
            Some(_) => "Description",
            None => "Comment",
        };
        if let Some(found) = self.attempt(scan, key, parsed) {
            return Some(found);
        }
        if let Some(text) = self.text("workflow") {
            let parsed = comfy_ui::parse_workflow(text, scan);
            if let Some(found) = self.attempt(scan, "workflow", parsed) {
                return Some(found);
            }
        }
        if let Some(text) = self.text("XML:com.adobe.xmp") {
            let parsed = xmp::parse_xmp(text);
            if let Some(found) = self.attempt(scan, "XML:com.adobe.xmp", parsed) {
                return Some(found);
            }
        }
        let exif = self.exif?;
        exif_data::from_tiff(exif, "PNG eXIf", scan)
    }
}
