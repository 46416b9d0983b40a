//! EXIF, as JPEG (`APP1` segment), WebP (`EXIF` chunk) and PNG (`eXIf` chunk) carry it.
//!
//! AUTOMATIC1111 and Forge store their `parameters` text in `UserComment` (tag 0x9286): an
//! 8-byte character-code prefix, then the text. `UNICODE\0` means UTF-16, whose byte order
//! writers disagree on, so it is taken from a byte-order mark, else from where the zero bytes
//! of ASCII characters fall, else from whichever order decodes to fewer impossible
//! characters, else from the TIFF header. ComfyUI stores its graphs in the `Model` / `Make` /
//! `ImageDescription` tags instead: `Prompt: {...}` (the API graph; also `prompt:{...}`) and
//! `Workflow: {...}` (the editor's workflow), the API graph read first wherever it is.
//!
//! A `UserComment` that is a JSON object is Fooocus's (`fooocus` scheme) or SwarmUI's
//! (`sui_image_params`), read by `generic`. Fooocus writes its text without the character-code
//! prefix, in IFD0, and names its scheme in `MakerNote` (0x927C): `a1111` means A1111 text
//! even when the prompt starts like JSON.

use std::io::{BufRead, Read, Seek};

use exif::{Reader, Value};

use super::text::latin1_or_utf8;
use super::{a1111, comfy, comfy_ui, generic, EmbeddedPrompt, Provenance, Scan, MAX_TEXT_BYTES};

type Detail = String;

/// Tags ComfyUI uses for its graph: ImageDescription, Make, Model.
const COMFY_TAGS: [u16; 3] = [0x010E, 0x010F, 0x0110];
const USER_COMMENT: u16 = 0x9286;
const MAKER_NOTE: u16 = 0x927C;

/// The prompt in a JPEG's EXIF; `None` when it has no EXIF or no prompt in it, or the JPEG
/// cannot be read up to its EXIF (noted in `scan`).
pub(super) fn read_jpeg<R: BufRead>(reader: &mut R, scan: &mut Scan) -> Option<EmbeddedPrompt> {
    let detail = match exif::get_exif_attr_from_jpeg(reader) {
        Ok(tiff) => return from_tiff(tiff, "JPEG EXIF", scan),
        Err(exif::Error::NotFound(_)) => return None,
        Err(exif::Error::InvalidFormat(what)) => format!("truncated or corrupt JPEG ({what})"),
        Err(e) => format!("cannot read the JPEG: {e}"),
    };
    scan.ignored("", detail);
    None
}

/// The prompt in a WebP's `EXIF` chunk, the RIFF chunk list walked by seeking; a broken
/// chunk list or EXIF chunk is noted in `scan`.
pub(super) fn read_webp<R: Read + Seek>(
    reader: &mut R,
    file_len: u64,
    scan: &mut Scan,
) -> Option<EmbeddedPrompt> {
    match find_webp_exif(reader, file_len) {
        Ok(Some(Ok(data))) => from_tiff(data, "WebP EXIF", scan),
        Ok(Some(Err(detail))) => {
            scan.ignored("WebP EXIF", detail);
            None
        }
        Ok(None) => None,
        Err(detail) => {
            scan.ignored("", detail);
            None
        }
    }
}

/// The WebP's `EXIF` chunk (or why it cannot be read), `None` when it has none; `Err` for a
/// broken RIFF chunk list.
fn find_webp_exif<R: Read + Seek>(
    reader: &mut R,
    file_len: u64,
) -> Result<Option<Result<Vec<u8>, Detail>>, Detail> {
    let truncated = |e: std::io::Error| format!("truncated or unreadable WebP: {e}");
    let mut header = [0u8; 12];
    reader.read_exact(&mut header).map_err(truncated)?;
    let riff_len = u64::from(u32::from_le_bytes([
        header[4], header[5], header[6], header[7],
    ]));
    let end = 8 + riff_len;
    if end > file_len {
        return Err(format!(
            "truncated WebP: the RIFF header announces {end} bytes, the file has {file_len}"
        ));
    }
    let mut pos = 12u64;
    let mut image = false;
    while pos + 8 <= end {
        let mut chunk = [0u8; 8];
        reader.read_exact(&mut chunk).map_err(truncated)?;
        let size = u64::from(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        let name = String::from_utf8_lossy(&chunk[..4]).into_owned();
        if pos + 8 + size > end {
            return Err(format!(
                "truncated or corrupt WebP: chunk {name:?} at byte {pos} runs past the end of the RIFF data"
            ));
        }
        image |= matches!(&chunk[..4], b"VP8 " | b"VP8L" | b"VP8X");
        if &chunk[..4] == b"EXIF" {
            if size > MAX_TEXT_BYTES as u64 {
                return Ok(Some(Err(format!(
                    "{size} bytes, over the {MAX_TEXT_BYTES}-byte limit for metadata"
                ))));
            }
            let mut data = vec![0u8; size as usize];
            reader.read_exact(&mut data).map_err(truncated)?;
            return Ok(Some(Ok(data)));
        }
        let padded = size + (size & 1);
        reader.seek_relative(padded as i64).map_err(truncated)?;
        pos += 8 + padded;
    }
    match image {
        true => Ok(None),
        false => Err("corrupt WebP: no VP8, VP8L or VP8X image chunk".into()),
    }
}

/// The prompt in a raw EXIF block (TIFF header first, an `Exif\0\0` prefix tolerated);
/// problems are noted in `scan`.
pub(super) fn from_tiff(
    mut data: Vec<u8>,
    container: &str,
    scan: &mut Scan,
) -> Option<EmbeddedPrompt> {
    if data.starts_with(b"Exif\0\0") {
        data.drain(..6);
    }
    let exif = match Reader::new().continue_on_error(true).read_raw(data) {
        Ok(exif) => exif,
        Err(e) => match e.distill_partial_result(|_| {}) {
            Ok(exif) => exif,
            Err(e) => {
                scan.ignored(container, format!("corrupt EXIF: {e}"));
                return None;
            }
        },
    };
    let a1111_scheme = names_a1111_scheme(&exif);
    for field in exif.fields() {
        if field.tag.number() != USER_COMMENT {
            continue;
        }
        let (Value::Undefined(bytes, _) | Value::Byte(bytes)) = &field.value else {
            continue;
        };
        let text = decode_user_comment(bytes, exif.little_endian());
        let at = format!("{container} UserComment");
        if let Some(found) = user_comment_prompt(&text, a1111_scheme, &at, scan) {
            return Some(found.at(at));
        }
    }
    // The API graph first, wherever it is, as in a PNG; then the workflow.
    for graph in [ComfyGraph::Prompt, ComfyGraph::Workflow] {
        for field in exif.fields() {
            if !COMFY_TAGS.contains(&field.tag.number()) {
                continue;
            }
            let Value::Ascii(values) = &field.value else {
                continue;
            };
            for value in values {
                let text = latin1_or_utf8(value);
                let Some(json) = comfy_json(&text, graph) else {
                    continue;
                };
                let at = format!("{container} {}", field.tag);
                let parsed = match graph {
                    ComfyGraph::Prompt => comfy::parse_prompt_graph(json, scan),
                    ComfyGraph::Workflow => comfy_ui::parse_workflow(json, scan),
                };
                match parsed {
                    Ok(Some(found)) => return Some(found.at(at)),
                    Ok(None) => {}
                    Err(detail) => scan.ignored(at, detail),
                }
            }
        }
    }
    None
}

/// The prompt in a `UserComment`'s text (noting JSON that does not parse in `scan`, at `at`):
/// a JSON object (Fooocus, SwarmUI) unless `a1111_scheme`, else A1111 `parameters` text.
fn user_comment_prompt(
    text: &str,
    a1111_scheme: bool,
    at: &str,
    scan: &mut Scan,
) -> Option<EmbeddedPrompt> {
    if !a1111_scheme && generic::looks_like_json(text) {
        return generic::parse_json_parameters(text)
            .map_err(|detail| scan.ignored(at, detail))
            .ok()
            .flatten();
    }
    let mut found = a1111::parse_a1111_parameters(text).filter(|f| f.has_text())?;
    found.provenance = Provenance::ExifUserComment;
    Some(found)
}

/// Whether Fooocus's `MakerNote` names its `a1111` metadata scheme (its other is `fooocus`).
fn names_a1111_scheme(exif: &exif::Exif) -> bool {
    exif.fields()
        .filter(|field| field.tag.number() == MAKER_NOTE)
        .any(|field| {
            let text = match &field.value {
                Value::Undefined(bytes, _) | Value::Byte(bytes) => latin1_or_utf8(bytes),
                Value::Ascii(values) => values
                    .first()
                    .map(|v| latin1_or_utf8(v))
                    .unwrap_or_default(),
                _ => return false,
            };
            text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .eq_ignore_ascii_case("a1111")
        })
}

/// The two graphs ComfyUI stores in EXIF.
#[derive(Clone, Copy)]
enum ComfyGraph {
    Prompt,
    Workflow,
}

/// The JSON of a ComfyUI EXIF text `Prompt: {...}` / `Workflow: {...}` holding `graph`: the
/// name in any case, spaces around the colon tolerated (`prompt:{...}`).
fn comfy_json(text: &str, graph: ComfyGraph) -> Option<&str> {
    let (name, json) = text.trim_start().split_once(':')?;
    let wanted = match graph {
        ComfyGraph::Prompt => "prompt",
        ComfyGraph::Workflow => "workflow",
    };
    let json = json.trim_start();
    (name.trim().eq_ignore_ascii_case(wanted) && json.starts_with('{')).then_some(json)
}

/// The text of a `UserComment` value: character-code prefix, then the text.
pub(super) fn decode_user_comment(bytes: &[u8], tiff_little_endian: bool) -> String {
    let text = match bytes.split_at_checked(8) {
        Some((b"UNICODE\0", body)) => decode_utf16(body, tiff_little_endian),
        Some((b"ASCII\0\0\0" | b"JIS\0\0\0\0\0" | [0, 0, 0, 0, 0, 0, 0, 0], body)) => {
            latin1_or_utf8(body)
        }
        // No character code, as when the comment sits in IFD0 as BYTE: UTF-16 shows itself by
        // a byte-order mark or by the zero bytes of its ASCII characters.
        _ if looks_like_utf16(bytes) => decode_utf16(bytes, tiff_little_endian),
        _ => latin1_or_utf8(bytes),
    };
    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// Whether bytes without a character code are UTF-16: a byte-order mark, or (trailing NULs
/// aside) at least half of the 16-bit units with a zero byte, all on the same side.
fn looks_like_utf16(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return true;
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1);
    let bytes = &bytes[..(end + 1).min(bytes.len())];
    let units = bytes.len() / 2;
    let zeros = |parity: usize| {
        bytes[..units * 2]
            .iter()
            .skip(parity)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let (even, odd) = (zeros(0), zeros(1));
    units > 0 && (even == 0 || odd == 0) && 2 * (even + odd) >= units
}

/// UTF-16 of either byte order; see the module documentation for how the order is chosen.
fn decode_utf16(body: &[u8], tiff_little_endian: bool) -> String {
    let body = &body[..body.len() & !1];
    let (body, little) = match body {
        [0xFE, 0xFF, rest @ ..] => (rest, false),
        [0xFF, 0xFE, rest @ ..] => (rest, true),
        _ => {
            let zeros_at = |parity: usize| {
                body.iter()
                    .skip(parity)
                    .step_by(2)
                    .filter(|&&b| b == 0)
                    .count()
            };
            let (even, odd) = (zeros_at(0), zeros_at(1));
            let little = if even != odd {
                odd > even
            } else {
                let (be, le) = (oddity(&utf16(body, false)), oddity(&utf16(body, true)));
                if be != le {
                    le < be
                } else {
                    tiff_little_endian
                }
            };
            (body, little)
        }
    };
    utf16(body, little)
}

fn utf16(body: &[u8], little: bool) -> String {
    let units = body.chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        if little {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Characters no prompt contains: replacements (bad surrogates), controls, private use.
fn oddity(text: &str) -> usize {
    text.chars()
        .filter(|&c| {
            c == char::REPLACEMENT_CHARACTER
                || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\0'))
                || ('\u{E000}'..='\u{F8FF}').contains(&c)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16_bytes(text: &str, little: bool) -> Vec<u8> {
        let mut out = b"UNICODE\0".to_vec();
        for unit in text.encode_utf16() {
            out.extend(if little {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            });
        }
        out
    }

    #[test]
    fn the_a1111_scheme_reads_text_that_starts_like_json_as_text() {
        let text = "{\"neon\" sign} over a bar\nSteps: 20, Seed: 1, Size: 8x8";
        let mut scan = Scan::new();
        assert!(user_comment_prompt(text, false, "JPEG EXIF UserComment", &mut scan).is_none());
        assert_eq!(
            scan.troubles.len(),
            1,
            "JSON that does not parse is a warning"
        );
        assert_eq!(scan.troubles[0].location, "JPEG EXIF UserComment");
        let mut scan = Scan::new();
        let found = user_comment_prompt(text, true, "JPEG EXIF UserComment", &mut scan).unwrap();
        assert_eq!(found.prompt, "{\"neon\" sign} over a bar");
        assert_eq!(found.provenance, Provenance::ExifUserComment);
        assert!(scan.troubles.is_empty());
    }

    #[test]
    fn comfy_exif_texts_are_recognised_in_any_spelling() {
        let prompt = |t| comfy_json(t, ComfyGraph::Prompt);
        assert_eq!(prompt("Prompt: {\"3\": {}}"), Some("{\"3\": {}}"));
        assert_eq!(prompt("prompt:{}"), Some("{}"));
        assert_eq!(prompt(" PROMPT : {}"), Some("{}"));
        assert_eq!(prompt("Workflow: {}"), None);
        assert_eq!(prompt("prompt: a cat"), None);
        assert_eq!(prompt("Canon"), None);
        assert_eq!(comfy_json("Workflow: {}", ComfyGraph::Workflow), Some("{}"));
    }

    #[test]
    fn user_comment_byte_order_is_detected() {
        for text in ["a lovely cat\nSteps: 20", "猫", "chat à 日本"] {
            for little in [false, true] {
                for tiff_le in [false, true] {
                    let decoded = decode_user_comment(&utf16_bytes(text, little), tiff_le);
                    if text == "猫" && little != tiff_le {
                        // One CJK character without zero bytes: only the TIFF order decides.
                        continue;
                    }
                    assert_eq!(decoded, text, "little={little} tiff_le={tiff_le}");
                }
            }
        }
        let mut bom = b"UNICODE\0\xFF\xFE".to_vec();
        bom.extend(utf16_bytes("猫", true)[8..].iter());
        assert_eq!(decode_user_comment(&bom, false), "猫");
        assert_eq!(decode_user_comment(b"ASCII\0\0\0a cat\0", true), "a cat");
        assert_eq!(decode_user_comment(b"a cat", true), "a cat");
    }

    #[test]
    fn user_comment_without_character_code_may_be_utf16() {
        let text = "a koi pond\nSteps: 18, Seed: 77";
        for little in [false, true] {
            let bare = utf16_bytes(text, little)[8..].to_vec();
            assert_eq!(decode_user_comment(&bare, !little), text, "little={little}");
            let bom: Vec<u8> = match little {
                true => [&[0xFF, 0xFE][..], &bare].concat(),
                false => [&[0xFE, 0xFF][..], &bare].concat(),
            };
            assert_eq!(decode_user_comment(&bom, !little), text);
        }
        // Text with a stray NUL is still text.
        assert_eq!(decode_user_comment(b"a cat\0", true), "a cat");
        assert_eq!(decode_user_comment("chat à".as_bytes(), true), "chat à");
    }
}
