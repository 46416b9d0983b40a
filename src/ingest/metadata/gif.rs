//! GIF: the text of a comment extension, where AUTOMATIC1111 saves its `parameters` text for
//! GIF output (`modules/images.py`, `save_image_with_geninfo`: Pillow's `comment=`).
//!
//! The block list (GIF89a specification) is walked from the header: the logical screen
//! descriptor and global colour table, then extensions (`0x21`, a label and sub-blocks) and
//! images (`0x2C`, a descriptor, a local colour table, LZW data in sub-blocks) up to the
//! trailer (`0x3B`). Image data and other extensions are skipped by seeking, sub-block by
//! sub-block; the first comment (label `0xFE`) whose text holds a prompt ends the walk. A
//! comment over [`MAX_TEXT_BYTES`] is skipped with a warning; a block list that breaks off
//! ends the walk with one.

use std::io::{BufRead, Seek};

use super::text::latin1_or_utf8;
use super::{a1111, EmbeddedPrompt, Scan, MAX_TEXT_BYTES};

type Detail = String;

const EXTENSION: u8 = 0x21;
const IMAGE: u8 = 0x2C;
const TRAILER: u8 = 0x3B;
const COMMENT: u8 = 0xFE;

/// The prompt in a GIF's comment extension, `reader` at the start of the file; problems are
/// noted in `scan`.
pub(super) fn read_gif<R: BufRead + Seek>(
    reader: &mut R,
    scan: &mut Scan,
) -> Option<EmbeddedPrompt> {
    match walk(reader, scan) {
        Ok(found) => found,
        Err(detail) => {
            scan.ignored("", detail);
            None
        }
    }
}

fn walk<R: BufRead + Seek>(
    reader: &mut R,
    scan: &mut Scan,
) -> Result<Option<EmbeddedPrompt>, Detail> {
    let mut header = [0u8; 13];
    read(reader, &mut header, "header")?;
    skip_colour_table(reader, header[10])?;
    loop {
        let mut kind = [0u8; 1];
        read(reader, &mut kind, "block list")?;
        match kind[0] {
            TRAILER => return Ok(None),
            EXTENSION => {
                let mut label = [0u8; 1];
                read(reader, &mut label, "extension")?;
                if label[0] != COMMENT {
                    skip_sub_blocks(reader)?;
                    continue;
                }
                let Some(bytes) = read_sub_blocks(reader)? else {
                    scan.ignored(
                        "GIF comment",
                        format!("over the {MAX_TEXT_BYTES}-byte limit for metadata"),
                    );
                    continue;
                };
                let text = latin1_or_utf8(&bytes);
                if let Some(found) = a1111::parse_a1111_parameters(&text).filter(|f| f.has_text()) {
                    return Ok(Some(found.at("GIF comment")));
                }
            }
            IMAGE => {
                let mut descriptor = [0u8; 9];
                read(reader, &mut descriptor, "image descriptor")?;
                skip_colour_table(reader, descriptor[8])?;
                let mut code_size = [0u8; 1];
                read(reader, &mut code_size, "image data")?;
                skip_sub_blocks(reader)?;
            }
            other => return Err(format!("corrupt GIF: unknown block type 0x{other:02X}")),
        }
    }
}

/// Skips the colour table that a descriptor's packed byte announces, if any.
fn skip_colour_table<R: BufRead + Seek>(reader: &mut R, packed: u8) -> Result<(), Detail> {
    if packed & 0x80 == 0 {
        return Ok(());
    }
    let size = 3i64 << ((packed & 0x07) + 1);
    skip(reader, size)
}

fn skip_sub_blocks<R: BufRead + Seek>(reader: &mut R) -> Result<(), Detail> {
    loop {
        let mut len = [0u8; 1];
        read(reader, &mut len, "data sub-blocks")?;
        if len[0] == 0 {
            return Ok(());
        }
        skip(reader, i64::from(len[0]))?;
    }
}

/// The sub-blocks' data joined, or `None` when it is over [`MAX_TEXT_BYTES`] (the rest is
/// skipped).
fn read_sub_blocks<R: BufRead + Seek>(reader: &mut R) -> Result<Option<Vec<u8>>, Detail> {
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 1];
        read(reader, &mut len, "comment")?;
        let len = usize::from(len[0]);
        if len == 0 {
            return Ok(Some(out));
        }
        if out.len() + len > MAX_TEXT_BYTES {
            skip(reader, len as i64)?;
            skip_sub_blocks(reader)?;
            return Ok(None);
        }
        let start = out.len();
        out.resize(start + len, 0);
        read(reader, &mut out[start..], "comment")?;
    }
}

fn read<R: BufRead>(reader: &mut R, buf: &mut [u8], what: &str) -> Result<(), Detail> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            format!("truncated GIF: the file ends inside the {what}")
        }
        _ => format!("cannot read the GIF {what}: {e}"),
    })
}

/// Skips `len` bytes, which must be there: seeking past the end is no error for a reader, so
/// the byte before the target is read.
fn skip<R: BufRead + Seek>(reader: &mut R, len: i64) -> Result<(), Detail> {
    reader
        .seek_relative(len - 1)
        .map_err(|e| format!("cannot read the GIF: {e}"))?;
    read(reader, &mut [0u8; 1], "data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A 1x1 GIF89a with a two-colour global table and `blocks` before its image.
    fn gif(blocks: &[u8]) -> Vec<u8> {
        let mut out = b"GIF89a\x01\x00\x01\x00\x80\x00\x00".to_vec();
        out.extend([0, 0, 0, 255, 255, 255]);
        out.extend(blocks);
        out.extend(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b");
        out
    }

    fn comment(text: &[u8]) -> Vec<u8> {
        let mut out = vec![EXTENSION, COMMENT];
        for piece in text.chunks(255) {
            out.push(piece.len() as u8);
            out.extend(piece);
        }
        out.push(0);
        out
    }

    fn read_bytes(bytes: &[u8]) -> (Option<EmbeddedPrompt>, usize) {
        let mut scan = Scan::new();
        let found = read_gif(&mut Cursor::new(bytes), &mut scan);
        (found, scan.troubles.len())
    }

    #[test]
    fn the_comment_after_other_extensions_is_read() {
        let text = format!(
            "{}\nSteps: 20, Sampler: Euler, Seed: 1",
            "a cat ".repeat(100)
        );
        let mut blocks = b"\x21\xf9\x04\x00\x00\x00\x00\x00".to_vec();
        blocks.extend(comment(text.as_bytes()));
        let (found, troubles) = read_bytes(&gif(&blocks));
        let found = found.expect("a prompt");
        assert_eq!(found.prompt, "a cat ".repeat(100).trim());
        assert_eq!(found.parameters["steps"], 20);
        assert_eq!(found.location, "GIF comment");
        assert_eq!(troubles, 0);
    }

    #[test]
    fn no_comment_no_prompt_and_truncation_is_a_warning() {
        let plain = gif(&[]);
        assert_eq!(read_bytes(&plain), (None, 0));
        for cut in 0..plain.len() - 1 {
            let (found, troubles) = read_bytes(&plain[..cut]);
            assert!(found.is_none() && troubles == 1, "cut at {cut}");
        }
        let (found, troubles) = read_bytes(&gif(&[0x99]));
        assert!(found.is_none() && troubles == 1);
    }
}
