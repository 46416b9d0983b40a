//! The Milvus backend: an index held by a Milvus server (`milvus://HOST:PORT/NAME`), behind
//! the same [`IndexRead`](super::IndexRead) / [`IndexWrite`](super::IndexWrite) seam as the
//! embedded index directory.
//!
//! - `client.rs`: the connection (5 s to answer, token, database) and the blocking wrapper
//!   around the async SDK (`milvus-sdk-rust`'s `ClientV2`).
//! - `schema.rs`: the collections `NAME_records`, `NAME_images`, `NAME_aligned`,
//!   `NAME_paths`, `NAME_manifest`, their fields and indexes.
//! - `keys.rs`: the stable 64-bit primary keys (blake3 of the normalised prompt, of the image
//!   content hash), so every write is an idempotent upsert and shards need no coordinator.
//! - `manifest.rs`: the manifest row, checked on open like `manifest.json`, and the writers'
//!   prompt-vector sums behind the mean prompt.
//! - `rows.rs`: records to rows and back.
//! - `reader.rs`, `writer.rs`: the two sides of the seam.
//!
//! **Images with the same content** at several paths are one record (its key is the
//! content's): search shows it once, with the path of the file written last. The paths
//! collection keeps every path with its own size and mtime and the record it names, so the
//! incremental indexer sees each file as indexed; a record is withdrawn (deleted from every
//! collection) only once no path names it any more. A changed file is a new record (new
//! content) and its old record goes the same way.
//!
//! **Ids** are the keys' 64 bits ([`keys::to_id`]); they are stable across machines and runs,
//! unlike the embedded index's sequence numbers.
//!
//! **Writers** take no lock (Milvus has none): shard workers may write one index at once.

// The SDK's own error type is 176 bytes and is what its whole API returns; the closures and
// helpers here pass it on unchanged until it becomes a crate `Error`, so boxing it at each call
// would only add allocations.
#![allow(clippy::result_large_err)]

mod client;
mod keys;
mod manifest;
mod reader;
mod rows;
mod schema;
mod writer;

pub use reader::MilvusReader;
pub use writer::MilvusWriter;
