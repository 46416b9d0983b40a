//! Ingest: turning files into records. For now, prompt corpora.
//!
//! - [`corpus`]: reads `.txt` (a prompt a line), `.csv` and `.tsv` (a `prompt` column, the
//!   rest kept as metadata), gzipped or not, and normalises prompts for de-duplication.

pub mod corpus;

pub use corpus::{dedup_key, normalize_prompt, CorpusEntry, CorpusReader, Row, MAX_PROMPT_BYTES};
