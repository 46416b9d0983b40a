//! The vector graph: hnsw_rs over unit-length embeddings, similarity = dot product.
//!
//! The graph lives in `DIR/vectors/` as hnsw_rs dump files named by generation plus
//! `state.json`, which names the current dump and the record id it is synced up to. A new
//! generation is written beside the old one and `state.json` is switched by an atomic rename,
//! so a killed writer leaves the previous graph intact.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Graph degree (hnsw_rs `max_nb_connection`).
const MAX_CONNECTIONS: usize = 24;
/// Candidate list size while building.
const EF_CONSTRUCTION: usize = 200;
/// Layers of the graph.
const MAX_LAYERS: usize = 16;
/// Records inserted per parallel insertion call.
const INSERT_CHUNK: usize = 50_000;

/// `1 - a.b` for unit vectors, clamped at 0: hnsw_rs's own `DistDot` asserts on the
/// rounding error of a vector's dot product with itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).max(0.0)
    }
}

/// Dot product, written so the compiler vectorises it (8 independent accumulators).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Exact nearest neighbours by brute force over `(id, vector)` pairs: the reference that
/// graph recall is measured against.
pub fn exact_search(vectors: &[(u64, Vec<f32>)], query: &[f32], k: usize) -> Vec<VectorHit> {
    let mut scored: Vec<VectorHit> = vectors
        .iter()
        .map(|(id, v)| VectorHit {
            id: *id,
            similarity: dot(query, v),
        })
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.similarity.total_cmp(&a.similarity));
    scored.truncate(k);
    scored.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    scored
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    basename: String,
    points: usize,
    upto: u64,
    dim: usize,
    /// Sum of every vector in the graph (for the mean vector); absent in graphs written before
    /// it was kept, and then rebuilt by the next writer.
    #[serde(default)]
    sum: Option<Vec<f64>>,
}

fn read_state(dir: &Path) -> Result<Option<State>> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::index(dir, format!("vectors/state.json is damaged: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Switches `state.json` atomically.
fn write_state(dir: &Path, state: &State) -> Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?).map_err(|e| Error::io(&tmp, e))?;
    let path = dir.join("state.json");
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(path, e))
}

/// A nearest-neighbour hit.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    /// Record id.
    pub id: u64,
    /// Dot product with the query (cosine, as all vectors are unit length).
    pub similarity: f32,
}

/// A loaded graph.
pub struct VectorIndex {
    hnsw: Hnsw<'static, f32, UnitDot>,
    dim: usize,
    points: usize,
    mean: Option<Vec<f32>>,
}

fn load_graph(dir: &Path, state: &State) -> Result<Hnsw<'static, f32, UnitDot>> {
    // hnsw_rs ties a loaded graph to its loader's lifetime (for memory-mapped data, which is
    // not used here); the loader is a few paths and is kept for the life of the process.
    let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, &state.basename)));
    let load = move || {
        let io = io;
        io.load_hnsw::<f32, UnitDot>()
    };
    match catch_unwind(AssertUnwindSafe(load)) {
        Ok(Ok(hnsw)) => Ok(hnsw),
        Ok(Err(e)) => Err(Error::index(
            dir,
            format!("vector graph {}: {e}", state.basename),
        )),
        Err(_) => Err(Error::index(
            dir,
            format!(
                "vector graph {} is damaged; run the import again to rebuild it",
                state.basename
            ),
        )),
    }
}

impl VectorIndex {
    /// The record id up to which (exclusive) the graph in `dir` is synced.
    pub fn synced_upto(dir: &Path) -> Result<u64> {
        Ok(read_state(dir)?.map_or(0, |s| s.upto))
    }

    /// True when the graph in `dir` holds vectors but not their sum (written by an older
    /// version): the next [`VectorIndex::extend`] recomputes it.
    pub fn lacks_sum(dir: &Path) -> Result<bool> {
        Ok(read_state(dir)?.is_some_and(|s| s.points > 0 && s.sum.is_none()))
    }

    /// Loads the graph in `dir`; `None` when none has been built yet.
    pub fn load(dir: &Path, dim: usize) -> Result<Option<Self>> {
        let Some(state) = read_state(dir)?.filter(|s| s.points > 0) else {
            return Ok(None);
        };
        if state.dim != dim {
            return Err(Error::index(
                dir,
                format!("vector graph is {}-d, the index is {dim}-d", state.dim),
            ));
        }
        let mut hnsw = load_graph(dir, &state)?;
        hnsw.set_searching_mode(true);
        let mean = state.sum.as_ref().map(|sum| {
            let mut mean: Vec<f32> = sum.iter().map(|&x| x as f32).collect();
            crate::models::l2_normalize(&mut mean);
            mean
        });
        Ok(Some(Self {
            hnsw,
            dim,
            points: state.points,
            mean,
        }))
    }

    /// Adds the vectors `source(from, to)` yields, from the graph's watermark up to `to`,
    /// writes a new generation and switches to it. Returns the number of vectors added. A graph
    /// without a recorded sum is read from record 0 so the sum covers every vector.
    pub fn extend<'c, I>(
        dir: &Path,
        source: impl FnOnce(u64, u64) -> I,
        dim: usize,
        to: u64,
    ) -> Result<usize>
    where
        I: Iterator<Item = Result<(u64, Vec<f32>)>> + 'c,
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let old = read_state(dir)?;
        let from = old.as_ref().map_or(0, |s| s.upto);
        let mut sum = old
            .as_ref()
            .map_or(Some(vec![0f64; dim]), |s| s.sum.clone())
            .filter(|s| s.len() == dim);
        let read_from = if sum.is_none() {
            sum = Some(vec![0f64; dim]);
            0
        } else {
            from
        };
        let sum_acc = sum.as_mut().expect("set above");
        let expected = (to - from) as usize + old.as_ref().map_or(0, |s| s.points);
        let hnsw = match &old {
            Some(state) if state.points > 0 => load_graph(dir, state)?,
            _ => Hnsw::new(
                MAX_CONNECTIONS,
                expected.max(1),
                MAX_LAYERS,
                EF_CONSTRUCTION,
                UnitDot,
            ),
        };
        let mut added = 0;
        let mut chunk: Vec<(Vec<f32>, usize)> = Vec::with_capacity(INSERT_CHUNK);
        let flush = |chunk: &mut Vec<(Vec<f32>, usize)>| {
            let refs: Vec<(&[f32], usize)> =
                chunk.iter().map(|(v, id)| (v.as_slice(), *id)).collect();
            hnsw.parallel_insert_slice(&refs);
            chunk.clear();
        };
        for item in source(read_from, to) {
            let (id, vector) = item?;
            if vector.len() != dim {
                return Err(Error::index(
                    dir,
                    format!(
                        "record {id} has a {}-d vector, expected {dim}",
                        vector.len()
                    ),
                ));
            }
            sum_acc
                .iter_mut()
                .zip(&vector)
                .for_each(|(s, &x)| *s += f64::from(x));
            if id < from {
                continue;
            }
            chunk.push((vector, id as usize));
            added += 1;
            if chunk.len() == INSERT_CHUNK {
                flush(&mut chunk);
            }
        }
        if !chunk.is_empty() {
            flush(&mut chunk);
        }
        let points = old.as_ref().map_or(0, |s| s.points) + added;
        if points == 0 {
            // hnsw_rs cannot dump an empty graph: record the watermark alone.
            return write_state(
                dir,
                &State {
                    basename: String::new(),
                    points,
                    upto: to,
                    dim,
                    sum,
                },
            )
            .map(|()| 0);
        }
        let generation = old
            .as_ref()
            .and_then(|s| s.basename.strip_prefix("graph-"))
            .and_then(|g| g.parse::<u64>().ok())
            .map_or(0, |g| g + 1);
        let basename = hnsw
            .file_dump(dir, &format!("graph-{generation}"))
            .map_err(|e| Error::index(dir, format!("cannot write the vector graph: {e}")))?;
        write_state(
            dir,
            &State {
                basename,
                points,
                upto: to,
                dim,
                sum,
            },
        )?;
        if let Some(old) = old.filter(|o| !o.basename.is_empty()) {
            for ext in ["hnsw.graph", "hnsw.data"] {
                let _ = std::fs::remove_file(dir.join(format!("{}.{ext}", old.basename)));
            }
        }
        Ok(added)
    }

    /// The normalised mean of every vector in the graph (the "mean prompt" of a prompt
    /// graph); `None` for a graph written before sums were kept, until a writer syncs it.
    pub fn mean(&self) -> Option<&[f32]> {
        self.mean.as_deref()
    }

    /// Number of vectors in the graph.
    pub fn len(&self) -> usize {
        self.points
    }

    /// True when the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// The `k` nearest records to the unit vector `query`; `ef` is the search breadth.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<VectorHit>> {
        if query.len() != self.dim {
            return Err(Error::Invalid(format!(
                "query vector is {}-d, the index is {}-d",
                query.len(),
                self.dim
            )));
        }
        if k == 0 || self.points == 0 {
            return Ok(Vec::new());
        }
        let found = self.hnsw.search(query, k, ef.max(k));
        Ok(found
            .into_iter()
            .map(|n| VectorHit {
                id: n.d_id as u64,
                similarity: 1.0 - n.distance,
            })
            .collect())
    }
}
