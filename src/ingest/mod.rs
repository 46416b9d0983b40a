//! Ingest: turning files into records.
//!
//! - [`corpus`]: reads `.txt` (a prompt a line), `.csv` and `.tsv` (a `prompt` column, the
//!   rest kept as metadata), gzipped or not, and normalises prompts for de-duplication.
//! - [`walk`]: finds the image files under a folder.
//! - [`labels`]: `image,prompt` CSVs (labelled image sets).
//! - [`metadata`]: prompts embedded in image files by SD front-ends.
//! - [`limits`]: the prompt size limit every source shares.
//! - [`decode`]: image pixels, decoded under [`DecodeLimits`] by every stage that needs them.

pub mod corpus;
pub mod decode;
pub mod labels;
pub mod limits;
pub mod metadata;
pub mod walk;

pub use corpus::{dedup_key, first_prompts, normalize_prompt, CorpusEntry, CorpusReader, Row};
pub use decode::{
    decode_image, decode_pixels, load_image, read_image_file, DecodeLimits, IMAGE_FORMATS,
};
pub use labels::{read_labels, Labelled};
pub use limits::MAX_PROMPT_BYTES;
pub use metadata::{
    infotext_fields, parse_a1111_parameters, png_text_chunks, read_embedded_prompt,
    read_embedded_prompt_bytes, read_metadata, read_metadata_bytes, read_metadata_of, to_infotext,
    EmbeddedPrompt, Metadata, MetadataWarning, Provenance,
};
pub use walk::{walk_images, ImageFile, Walk};
