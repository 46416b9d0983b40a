//! Prompt search over an opened index.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::fuse::{rrf, RRF_K};
use crate::ingest::dedup_key;
use crate::models::TextEmbedder;
use crate::store::{Fused, IndexRead, Space, Stored, TextHit};
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
    index: &dyn IndexRead,
    embedder: &dyn TextEmbedder,
    query: &str,
    config: &SearchConfig,
) -> Result<Vec<PromptHit>> {
    if query.trim().is_empty() {
        return Err(Error::Invalid("the search text is empty".into()));
    }
    let k = config.k;
    let depth = config.depth.max(k);
    let semantic_wanted = config.mode != SearchMode::Bm25 && index.has_vectors(Space::Prompts);
    let embed = || -> Result<Vec<f32>> {
        embedder
            .embed(&[query])?
            .pop()
            .ok_or_else(|| Error::Internal("the embedder returned nothing".into()))
    };
    if config.mode == SearchMode::Hybrid && semantic_wanted && index.has_engine_hybrid() {
        let fused = index.engine_hybrid(query, &embed()?, depth, config.ef)?;
        return Ok(engine_ranked(query, fused, k));
    }
    // BM25 runs on a second thread while the query is embedded.
    let (bm25, semantic) = std::thread::scope(|scope| {
        let bm25 = scope.spawn(|| match config.mode {
            SearchMode::Semantic => Ok(Vec::new()),
            _ => index.bm25(query, depth),
        });
        let semantic = match semantic_wanted {
            false => Ok(Vec::new()),
            true => embed().and_then(|v| index.nearest(Space::Prompts, &v, depth, config.ef)),
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
    let mut known: HashMap<u64, Stored> = semantic.into_iter().map(|h| (h.id, h.record)).collect();
    let mut hits = Vec::with_capacity(k);
    let mut next = 0;
    while hits.len() < k && next < ranked.len() {
        // Records the semantic list did not bring are fetched, as many as are still wanted.
        let take = &ranked[next..(next + k - hits.len()).min(ranked.len())];
        next += take.len();
        let missing: Vec<u64> = take
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !known.contains_key(id))
            .collect();
        for (id, record) in missing.iter().zip(index.records(&missing)?) {
            if let Some(record) = record {
                known.insert(*id, record);
            }
        }
        for &(id, score) in take {
            let Some(Stored { prompt, metadata }) = known.remove(&id) else {
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
    }
    Ok(hits)
}

/// The first `k` of an engine's fused ranking as hits, the records whose prompt is the query
/// itself first (as [`exact_first`] does for a ranking fused here). The engine does not say
/// where each list ranked a record.
fn engine_ranked(query: &str, fused: Vec<Fused>, k: usize) -> Vec<PromptHit> {
    let key = dedup_key(query);
    let (mut first, rest): (Vec<_>, Vec<_>) = fused
        .into_iter()
        .partition(|f| dedup_key(&f.record.prompt) == key);
    first.extend(rest);
    first
        .into_iter()
        .take(k)
        .map(|f| PromptHit {
            id: f.id,
            prompt: f.record.prompt,
            score: f.score,
            bm25_rank: None,
            semantic_rank: None,
            similarity: f.similarity,
            metadata: f.record.metadata,
        })
        .collect()
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
