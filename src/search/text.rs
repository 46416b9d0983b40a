//! Prompt search over an opened index.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::fuse::{rrf, RRF_K};
use crate::models::TextEmbedder;
use crate::store::{IndexReader, TextHit, VectorHit, VectorIndex};
use crate::{Error, Result};

/// Which rankings a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// BM25 and semantic, fused by reciprocal rank; prompts that are the query itself first.
    #[default]
    Hybrid,
    /// Nearest embeddings only.
    Semantic,
    /// BM25 only.
    Bm25,
}

/// How to search.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// Results wanted.
    pub k: usize,
    /// Rankings used.
    pub mode: SearchMode,
    /// Candidates taken from each ranking before fusion (at least `k`).
    pub depth: usize,
    /// HNSW search breadth.
    pub ef: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            k: 10,
            mode: SearchMode::Hybrid,
            // Fusion needs more than k candidates per list to find agreements.
            depth: 50,
            // ef 64 gives 0.99 top-10 recall on 100k MiniLM vectors in under 1 ms
            // (docs/BENCHMARKS.md).
            ef: 64,
        }
    }
}

/// One result, as `search --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PromptHit {
    /// Record id.
    pub id: u64,
    /// The prompt.
    pub prompt: String,
    /// RRF score (hybrid), cosine (semantic) or BM25 score (bm25).
    pub score: f32,
    /// 1-based rank in the BM25 list, if it was there.
    pub bm25_rank: Option<usize>,
    /// 1-based rank in the semantic list, if it was there.
    pub semantic_rank: Option<usize>,
    /// Cosine similarity to the query, when the semantic list had it.
    pub similarity: Option<f32>,
    /// The record's metadata.
    pub metadata: Map<String, Value>,
}

/// Searches the index for prompts like `query`.
pub fn search_prompts(
    index: &IndexReader,
    embedder: &dyn TextEmbedder,
    query: &str,
    config: &SearchConfig,
) -> Result<Vec<PromptHit>> {
    if query.trim().is_empty() {
        return Err(Error::Invalid("the search text is empty".into()));
    }
    let k = config.k;
    let depth = config.depth.max(k);
    // BM25 runs on a second thread while the query is embedded.
    let (bm25, semantic) = std::thread::scope(|scope| {
        let bm25 = scope.spawn(|| match config.mode {
            SearchMode::Semantic => Ok(Vec::new()),
            _ => index.text().search(query, depth),
        });
        let semantic = match (config.mode, index.vectors()) {
            (SearchMode::Bm25, _) | (_, None) => Ok(Vec::new()),
            (_, Some(vectors)) => embedder.embed(&[query]).and_then(|mut v| {
                let query_vec = v
                    .pop()
                    .ok_or_else(|| Error::Internal("the embedder returned nothing".into()))?;
                live_neighbours(index, vectors, &query_vec, depth, config.ef)
            }),
        };
        let bm25 = bm25
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("BM25 search failed".into())));
        (bm25, semantic)
    });
    let (bm25, semantic) = (bm25?, semantic?);
    let bm25_ids: Vec<u64> = bm25.iter().map(|h| h.id).collect();
    let semantic_ids: Vec<u64> = semantic.iter().map(|h| h.id).collect();
    let bm25_rank: HashMap<u64, usize> = bm25_ids
        .iter()
        .enumerate()
        .map(|(r, id)| (*id, r + 1))
        .collect();
    let sem_rank: HashMap<u64, (usize, f32)> = semantic
        .iter()
        .enumerate()
        .map(|(r, h)| (h.id, (r + 1, h.similarity)))
        .collect();
    let ranked: Vec<(u64, f32)> = match config.mode {
        SearchMode::Hybrid => exact_first(rrf(&[&bm25_ids, &semantic_ids], RRF_K), &bm25),
        SearchMode::Semantic => semantic.iter().map(|h| (h.id, h.similarity)).collect(),
        SearchMode::Bm25 => bm25.iter().map(|h| (h.id, h.score)).collect(),
    };
    let mut hits = Vec::with_capacity(k);
    for (id, score) in ranked {
        if hits.len() == k {
            break;
        }
        let Some((prompt, metadata)) = index.text().get(id)? else {
            continue;
        };
        hits.push(PromptHit {
            id,
            prompt,
            score,
            bm25_rank: bm25_rank.get(&id).copied(),
            semantic_rank: sem_rank.get(&id).map(|(r, _)| *r),
            similarity: sem_rank.get(&id).map(|(_, s)| *s),
            metadata,
        });
    }
    Ok(hits)
}

/// The `depth` nearest records to `query` in the prompt graph that are still live: withdrawn
/// records (replaced or vanished images) stay in the graph until it is rebuilt, so more are
/// asked for, and more again, until `depth` live ones are found or the graph is exhausted.
fn live_neighbours(
    index: &IndexReader,
    graph: &VectorIndex,
    query: &[f32],
    depth: usize,
    ef: usize,
) -> Result<Vec<VectorHit>> {
    let mut wanted = depth + depth / 2 + 8;
    loop {
        let wanted_now = wanted.min(graph.len());
        let found = graph.search(query, wanted_now, ef.max(wanted_now))?;
        let mut live = Vec::with_capacity(depth);
        for hit in found {
            if index.text().contains(hit.id)? {
                live.push(hit);
                if live.len() == depth {
                    return Ok(live);
                }
            }
        }
        if wanted_now >= graph.len() {
            return Ok(live);
        }
        wanted *= 4;
    }
}

/// `fused` with the records whose prompt is the query itself first (as BM25 ranks them), so
/// a near-duplicate that embeds a hair closer never displaces the exact prompt.
fn exact_first(fused: Vec<(u64, f32)>, bm25: &[TextHit]) -> Vec<(u64, f32)> {
    let exact: HashSet<u64> = bm25.iter().filter(|h| h.exact).map(|h| h.id).collect();
    let (mut first, rest): (Vec<_>, Vec<_>) =
        fused.into_iter().partition(|(id, _)| exact.contains(id));
    first.extend(rest);
    first
}
