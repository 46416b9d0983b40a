//! Ingest: turning files into records. For now, prompt corpora.
//!
//! - [`corpus`]: reads `.txt` (a prompt a line), `.csv` and `.tsv` (a `prompt` column, the
//!   rest kept as metadata), gzipped or not, and normalises prompts for de-duplication.
//! - [`walk`]: finds the image files under a folder.
//! - [`labels`]: `image,prompt` CSVs (labelled image sets).
//! - [`metadata`]: prompts embedded in image files by SD front-ends.

pub mod corpus;
pub mod labels;
pub mod metadata;
pub mod walk;

pub use corpus::{
    dedup_key, first_prompts, normalize_prompt, CorpusEntry, CorpusReader, Row, MAX_PROMPT_BYTES,
};
pub use labels::{read_labels, Labelled};
pub use metadata::{
    parse_a1111_parameters, read_embedded_prompt, read_embedded_prompt_bytes, EmbeddedPrompt,
    Provenance,
};
pub use walk::{walk_images, ImageFile, Walk};
