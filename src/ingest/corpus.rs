//! Prompt corpora: plain text, CSV or TSV, optionally gzipped (detected by content).
//!
//! A corpus is read as a stream of [`Row`]s so that millions of lines never sit in memory.
//! Rows that cannot be prompts (empty, over [`MAX_PROMPT_BYTES`], no prompt field) are
//! reported as [`Row::Rejected`] and the import goes on; a file that is not text at all (NUL
//! bytes, invalid UTF-8) or a table without a `prompt` column is an error naming the file and
//! the line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use super::limits::MAX_PROMPT_BYTES;
use crate::{Error, Result};

/// One prompt read from a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusEntry {
    /// 1-based line (text) or record (CSV/TSV, header = 1) number.
    pub line: u64,
    /// The prompt, trimmed.
    pub prompt: String,
    /// The other columns of a CSV/TSV row.
    pub metadata: Map<String, Value>,
}

/// What a corpus row turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A usable prompt.
    Prompt(CorpusEntry),
    /// A row that was skipped, and why.
    Rejected {
        /// Line or record number.
        line: u64,
        /// Why it was skipped.
        reason: String,
    },
}

enum Format {
    Text,
    Table { delimiter: u8, quoting: bool },
}

/// A streaming reader over one corpus file.
pub struct CorpusReader {
    path: PathBuf,
    inner: Inner,
    consumed: Arc<AtomicU64>,
    size: u64,
}

/// Counts the bytes read from the file itself (before any decompression), for progress.
struct Counting<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Inner {
    Text {
        reader: Box<dyn BufRead + Send>,
        line: u64,
    },
    Table {
        reader: Box<csv::Reader<Box<dyn Read + Send>>>,
        prompt_col: usize,
        headers: Vec<String>,
    },
}

impl CorpusReader {
    /// Opens `path`, sniffing gzip by its magic bytes and the format by the extension under
    /// any `.gz` (`.csv`, `.tsv`; anything else is one prompt per line).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::input(path, "is a directory, not a corpus file"));
        }
        let size = file.metadata().map_or(0, |m| m.len());
        let consumed = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: file,
            consumed: consumed.clone(),
        };
        let mut raw = BufReader::with_capacity(1 << 16, counting);
        let gz = raw
            .fill_buf()
            .map_err(|e| Error::io(path, e))?
            .starts_with(&[0x1f, 0x8b]);
        let stream: Box<dyn Read + Send> = if gz {
            Box::new(MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        let head = reader
            .fill_buf()
            .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
        if head.is_empty() {
            return Err(Error::input(
                path,
                "the file is empty: no prompts to import",
            ));
        }
        if let Some(pos) = head.iter().position(|&b| b == 0) {
            return Err(Error::input(
                path,
                format!("not a text file (NUL byte at offset {pos}); expected one prompt per line, CSV or TSV"),
            ));
        }
        let inner = match detect_format(path) {
            Format::Text => Inner::Text {
                reader: Box::new(reader),
                line: 0,
            },
            Format::Table { delimiter, quoting } => {
                let boxed: Box<dyn Read + Send> = Box::new(RecordGuard::new(reader, quoting));
                let mut table = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .quoting(quoting)
                    .flexible(true)
                    .from_reader(boxed);
                let header = table
                    .byte_headers()
                    .map_err(|e| Error::input(path, format!("header: {e}")))?;
                let headers: Vec<String> = header
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).trim().to_string())
                    .collect();
                let prompt_col = headers
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case("prompt"))
                    .ok_or_else(|| {
                        Error::input(
                            path,
                            format!("no `prompt` column; the header has: {}", headers.join(", ")),
                        )
                    })?;
                Inner::Table {
                    reader: Box::new(table),
                    prompt_col,
                    headers,
                }
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            consumed,
            size,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that tells, from anywhere, the bytes of the file consumed so far and its
    /// size (for a progress bar).
    pub fn progress_handle(&self) -> impl Fn() -> (u64, u64) + Send + Sync + 'static {
        let consumed = self.consumed.clone();
        let size = self.size;
        move || (consumed.load(Ordering::Relaxed), size)
    }
}

/// Longest line of a text corpus held in memory: a longer one is read to its end without
/// being kept, and rejected (twice the prompt limit, so that a prompt within the limit but
/// padded with blanks still fits).
pub const MAX_LINE_KEPT: usize = 2 * MAX_PROMPT_BYTES;

/// Longest record of a CSV or TSV corpus: a table holding a longer one is refused, since the
/// CSV reader would hold all of it.
pub const MAX_RECORD_BYTES: usize = 64 * MAX_PROMPT_BYTES;

/// Reads one line (through its `\n`, or to the end of the input) and returns its length in
/// bytes, `None` at the end of the input. The line is appended to `buf` only when it is at
/// most `keep` bytes long; a longer one is consumed without being kept, so that `buf` never
/// holds more than `keep` bytes whatever the input.
pub fn read_line_bounded<R: BufRead + ?Sized>(
    reader: &mut R,
    keep: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<u64>> {
    let start = buf.len();
    let mut length = 0u64;
    let mut kept = true;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((length > 0).then_some(length));
        }
        let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        length += take as u64;
        if kept && length <= keep as u64 {
            buf.extend_from_slice(&chunk[..take]);
        } else if kept {
            kept = false;
            buf.truncate(start);
        }
        reader.consume(take);
        if ends {
            return Ok(Some(length));
        }
    }
}

/// Fails a table's input once a record (a run of bytes between record-ending newlines, those
/// outside quotes when the table quotes) grows over [`MAX_RECORD_BYTES`].
pub(super) struct RecordGuard<R> {
    inner: R,
    quoting: bool,
    in_quotes: bool,
    record: usize,
}

impl<R> RecordGuard<R> {
    pub(super) fn new(inner: R, quoting: bool) -> Self {
        RecordGuard {
            inner,
            quoting,
            in_quotes: false,
            record: 0,
        }
    }
}

impl<R: Read> Read for RecordGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'"' if self.quoting => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => {
                    self.record = 0;
                    continue;
                }
                _ => {}
            }
            self.record += 1;
            if self.record > MAX_RECORD_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a record over {MAX_RECORD_BYTES} bytes: not a prompt table"),
                ));
            }
        }
        Ok(n)
    }
}

fn detect_format(path: &Path) -> Format {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        Format::Table {
            delimiter: b',',
            quoting: true,
        }
    } else if name.ends_with(".tsv") || name.ends_with(".tab") {
        // TSV has no quoting convention: prompts keep their quote characters.
        Format::Table {
            delimiter: b'\t',
            quoting: false,
        }
    } else {
        Format::Text
    }
}

/// Checks one prompt candidate; returns the trimmed prompt or why it was rejected.
fn accept(raw: &str) -> std::result::Result<String, String> {
    let prompt = raw.trim();
    if prompt.is_empty() {
        return Err("empty prompt".into());
    }
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err(format!(
            "prompt is {} bytes, over the {MAX_PROMPT_BYTES}-byte limit",
            prompt.len()
        ));
    }
    Ok(prompt.to_string())
}

fn metadata_value(field: &str) -> Value {
    if let Ok(i) = field.parse::<i64>() {
        return Value::from(i);
    }
    match field.parse::<f64>() {
        Ok(f) if f.is_finite() && !field.is_empty() => Value::from(f),
        _ => Value::from(field),
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        let path = &self.path;
        match &mut self.inner {
            Inner::Text { reader, line } => loop {
                let mut buf = Vec::new();
                let length = match read_line_bounded(reader, MAX_LINE_KEPT, &mut buf) {
                    Ok(None) => return None,
                    Ok(Some(length)) => length,
                    Err(e) => {
                        return Some(Err(Error::input(path, format!("line {}: {e}", *line + 1))))
                    }
                };
                *line += 1;
                if length > MAX_LINE_KEPT as u64 {
                    return Some(Ok(Row::Rejected {
                        line: *line,
                        reason: format!(
                            "line of {length} bytes, over the {MAX_PROMPT_BYTES}-byte limit for a prompt"
                        ),
                    }));
                }
                let text = match String::from_utf8(buf) {
                    Ok(t) => t,
                    Err(e) => {
                        return Some(Err(Error::input(
                            path,
                            format!(
                                "line {}: not valid UTF-8 (byte {}); is this a text file?",
                                line,
                                e.utf8_error().valid_up_to()
                            ),
                        )))
                    }
                };
                if text.contains('\0') {
                    return Some(Err(Error::input(
                        path,
                        format!("line {line}: NUL byte: not a text file"),
                    )));
                }
                if text.trim().is_empty() {
                    continue;
                }
                return Some(Ok(match accept(&text) {
                    Ok(prompt) => Row::Prompt(CorpusEntry {
                        line: *line,
                        prompt,
                        metadata: Map::new(),
                    }),
                    Err(reason) => Row::Rejected {
                        line: *line,
                        reason,
                    },
                }));
            },
            Inner::Table {
                reader,
                prompt_col,
                headers,
            } => {
                let mut record = csv::ByteRecord::new();
                match reader.read_byte_record(&mut record) {
                    Ok(false) => None,
                    Err(e) => Some(Err(Error::input(path, format!("{e}")))),
                    Ok(true) => {
                        let line = record.position().map_or(0, |p| p.line());
                        let mut fields = Vec::with_capacity(record.len());
                        for field in record.iter() {
                            match std::str::from_utf8(field) {
                                Ok(s) if !s.contains('\0') => fields.push(s),
                                Ok(_) => {
                                    return Some(Err(Error::input(
                                        path,
                                        format!("line {line}: NUL byte: not a text file"),
                                    )))
                                }
                                Err(e) => {
                                    return Some(Err(Error::input(
                                        path,
                                        format!(
                                            "line {line}: not valid UTF-8 (byte {} of a field)",
                                            e.valid_up_to()
                                        ),
                                    )))
                                }
                            }
                        }
                        let Some(raw) = fields.get(*prompt_col) else {
                            return Some(Ok(Row::Rejected {
                                line,
                                reason: format!("only {} fields, no prompt", fields.len()),
                            }));
                        };
                        Some(Ok(match accept(raw) {
                            Ok(prompt) => {
                                let metadata = headers
                                    .iter()
                                    .zip(&fields)
                                    .enumerate()
                                    .filter(|(i, _)| i != prompt_col)
                                    .map(|(_, (h, f))| (h.clone(), metadata_value(f)))
                                    .collect();
                                Row::Prompt(CorpusEntry {
                                    line,
                                    prompt,
                                    metadata,
                                })
                            }
                            Err(reason) => Row::Rejected { line, reason },
                        }))
                    }
                }
            }
        }
    }
}

/// The first `n` usable prompts of a corpus (rejected rows skipped), e.g. for benchmarks.
pub fn first_prompts(path: &Path, n: usize) -> Result<Vec<String>> {
    let mut prompts = Vec::with_capacity(n.min(1 << 20));
    for row in CorpusReader::open(path)? {
        if prompts.len() == n {
            break;
        }
        if let Row::Prompt(entry) = row? {
            prompts.push(entry.prompt);
        }
    }
    Ok(prompts)
}

/// The form two prompts share when they are "the same": lower case, whitespace collapsed.
pub fn normalize_prompt(prompt: &str) -> String {
    prompt
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The de-duplication key of a prompt: blake3 of its normalised form.
pub fn dedup_key(prompt: &str) -> [u8; 32] {
    *blake3::hash(normalize_prompt(prompt).as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `left` bytes of `a`, then one newline, made up as they are read.
    struct Endless {
        left: u64,
        newline: bool,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            if self.left > 0 {
                let n = (buf.len() as u64).min(self.left) as usize;
                buf[..n].fill(b'a');
                self.left -= n as u64;
                return Ok(n);
            }
            if std::mem::take(&mut self.newline) {
                buf[0] = b'\n';
                return Ok(1);
            }
            Ok(0)
        }
    }

    #[test]
    fn a_bounded_line_read_never_holds_more_than_its_limit() {
        // 1 GiB without a newline: read through, never kept.
        let endless = Endless {
            left: 1 << 30,
            newline: true,
        };
        let mut reader = BufReader::with_capacity(1 << 16, endless);
        let mut buf = Vec::new();
        let length = read_line_bounded(&mut reader, MAX_LINE_KEPT, &mut buf).unwrap();
        assert_eq!(length, Some((1 << 30) + 1));
        assert!(buf.is_empty());
        assert!(
            buf.capacity() <= MAX_LINE_KEPT + (1 << 16),
            "{}",
            buf.capacity()
        );
        let again = read_line_bounded(&mut reader, MAX_LINE_KEPT, &mut buf).unwrap();
        assert_eq!(again, None);

        // Lines within the limit are kept whole, the last one without its newline too.
        let mut text: &[u8] = b"a cat\n\nno newline";
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut text, 8, &mut buf).unwrap(), Some(6));
        assert_eq!(buf, b"a cat\n");
        buf.clear();
        assert_eq!(read_line_bounded(&mut text, 8, &mut buf).unwrap(), Some(1));
        buf.clear();
        assert_eq!(read_line_bounded(&mut text, 8, &mut buf).unwrap(), Some(10));
        assert!(buf.is_empty(), "over the limit of 8: not kept");
        assert_eq!(read_line_bounded(&mut text, 8, &mut buf).unwrap(), None);
    }
}
