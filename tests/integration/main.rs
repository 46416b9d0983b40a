//! The integration tests, one binary: each file here is a module, `common` their shared
//! helpers (the real binary, models, data and server). Tests of different modules run at
//! once, so none changes process-wide state and each writes only to its own folders.
//! `tests/corpus_lines.rs` and `tests/preprocess_memory.rs` stay binaries of their own: they
//! measure their own process's memory.
// `metadata`'s large `json!` graphs need the deeper macro recursion.
#![recursion_limit = "256"]

mod common;

mod a1111;
mod backends;
mod blip;
mod browser;
mod cli;
mod clip;
mod compat;
mod crash;
mod crossmodal;
mod efficientnet;
mod fuzz_a1111_xmp;
mod fuzz_ingest;
mod fuzz_subgraphs;
mod generate;
mod hardening;
mod images;
mod metadata;
mod metadata_a1111;
mod metadata_comfy;
mod metadata_formats;
mod metadata_trouble;
mod milvus;
mod milvus_auth;
mod minilm;
mod models;
mod report;
mod search;
mod serve;
mod store;
