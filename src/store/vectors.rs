//! The vector graph: hnsw_rs over unit-length embeddings, similarity = dot product.
//!
//! The graph lives in `DIR/vectors/` as hnsw_rs dump files named by generation plus
//! `state.json`, which names the current dump, its checksums and the record id it is synced up
//! to. A new generation is written beside the old one, flushed to the disk, and `state.json` is
//! switched by an atomic rename, so a killed writer leaves the previous graph intact. The
//! previous generation is kept until the next switch, so a reader that read the old
//! `state.json` just before a switch still finds its files.
//!
//! The graph is derived from the catalog: a writer that finds it damaged (unreadable state,
//! missing or altered dump files, a dump that does not load) rebuilds it from the catalog and
//! says so; a reader reports it and names the command that rebuilds it.

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use super::manifest::HnswParams;
use crate::{Error, Result};

/// Layers of every graph: hnsw_rs dumps only graphs of its full 16 layers, so this is not
/// one of the index's [`HnswParams`].
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
    /// blake3 of the dump's `.hnsw.graph` and `.hnsw.data` files; absent in graphs written
    /// before they were kept (those are checked by loading them).
    #[serde(default)]
    blake3: Option<[String; 2]>,
}

/// What a reader is told to do about a damaged graph.
const REBUILD_HINT: &str =
    "run `promptdex import` or `promptdex index` on this index to rebuild it from the catalog";

fn read_state(dir: &Path) -> Result<Option<State>> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::index(dir, format!("vector graph state.json is damaged ({e})"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// `e`, when it is about a damaged graph, with what to do about it.
fn with_hint(e: Error) -> Error {
    match e {
        Error::Index { path, detail } => Error::Index {
            path,
            detail: format!("{detail}; {REBUILD_HINT}"),
        },
        other => other,
    }
}

/// The two files of the dump `basename` in `dir`.
fn dump_files(dir: &Path, basename: &str) -> [PathBuf; 2] {
    ["hnsw.graph", "hnsw.data"].map(|ext| dir.join(format!("{basename}.{ext}")))
}

fn blake3_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hasher.finalize().to_hex().to_string());
        }
        hasher.update(&buf[..n]);
    }
}

/// Fails unless the dump `state` names is on disk with the checksums it recorded.
fn check_dump(dir: &Path, state: &State) -> Result<()> {
    let files = dump_files(dir, &state.basename);
    for (i, path) in files.iter().enumerate() {
        let damaged = |what: String| {
            Error::index(
                dir,
                format!("vector graph {}: {} {what}", state.basename, path.display()),
            )
        };
        if !path.is_file() {
            return Err(damaged("is missing".into()));
        }
        if let Some(sums) = &state.blake3 {
            let found = blake3_file(path)?;
            if found != sums[i] {
                return Err(damaged(format!(
                    "is damaged (blake3 {found}, {} when written)",
                    sums[i]
                )));
            }
        }
    }
    Ok(())
}

/// Flushes a freshly written dump to the disk and returns its checksums.
fn seal_dump(dir: &Path, basename: &str) -> Result<[String; 2]> {
    let [graph, data] = dump_files(dir, basename);
    for path in [&graph, &data] {
        crate::fsio::sync_file(path)?;
    }
    crate::fsio::sync_dir(dir)?;
    Ok([blake3_file(&graph)?, blake3_file(&data)?])
}

/// Deletes every dump in `dir` except those named in `keep` (the current and the previous
/// generation), including the leftovers of killed runs.
fn remove_other_dumps(dir: &Path, keep: &[&str]) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(|n| {
            n.strip_suffix(".hnsw.graph")
                .or_else(|| n.strip_suffix(".hnsw.data"))
        }) else {
            continue;
        };
        if !keep.contains(&base) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Switches `state.json` atomically and durably.
fn write_state(dir: &Path, state: &State) -> Result<()> {
    crate::fsio::write_atomic(&dir.join("state.json"), &serde_json::to_vec_pretty(state)?)
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
    let damaged =
        |what: String| Error::index(dir, format!("vector graph {} {what}", state.basename));
    match catch_unwind(AssertUnwindSafe(load)) {
        Ok(Ok(hnsw)) if hnsw.get_nb_point() == state.points => Ok(hnsw),
        Ok(Ok(hnsw)) => Err(damaged(format!(
            "holds {} vectors, state.json says {}",
            hnsw.get_nb_point(),
            state.points
        ))),
        Ok(Err(e)) => Err(damaged(format!("cannot be loaded ({e})"))),
        Err(_) => Err(damaged("is damaged".into())),
    }
}

/// Loads the graph `state` names after checking its files.
fn open_graph(dir: &Path, state: &State, dim: usize) -> Result<Hnsw<'static, f32, UnitDot>> {
    if state.dim != dim {
        return Err(Error::index(
            dir,
            format!("vector graph is {}-d, the index is {dim}-d", state.dim),
        ));
    }
    check_dump(dir, state)?;
    load_graph(dir, state)
}

/// The state of the graph in `dir` a writer can build on, or `None` (start from nothing);
/// damage is reported through `progress`.
fn usable_state(dir: &Path, dim: usize, progress: &mut dyn FnMut(&str)) -> Option<State> {
    let checked = read_state(dir).and_then(|state| match state {
        Some(s) if s.points > 0 && s.dim != dim => Err(Error::index(
            dir,
            format!("vector graph is {}-d, the index is {dim}-d", s.dim),
        )),
        Some(s) if s.points > 0 => check_dump(dir, &s).map(|()| Some(s)),
        other => Ok(other),
    });
    checked.unwrap_or_else(|e| {
        progress(&format!("{e}: rebuilding it from the catalog"));
        None
    })
}

impl VectorIndex {
    /// The record id up to which (exclusive) the graph in `dir` is synced.
    pub fn synced_upto(dir: &Path) -> Result<u64> {
        Ok(read_state(dir)?.map_or(0, |s| s.upto))
    }

    /// Loads the graph in `dir`; `None` when none has been built yet. A damaged graph is an
    /// error that names the command rebuilding it. Creates nothing.
    pub fn load(dir: &Path, dim: usize) -> Result<Option<Self>> {
        let Some(state) = read_state(dir).map_err(with_hint)?.filter(|s| s.points > 0) else {
            return Ok(None);
        };
        let mut hnsw = open_graph(dir, &state, dim).map_err(with_hint)?;
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

    /// Brings the graph in `dir` up to record `to` (exclusive) with the vectors
    /// `source(from, to)` yields: adds those from the graph's watermark on, writes a new
    /// generation and switches to it; does nothing when the graph is already there and sound.
    /// Returns the number of vectors added. A graph without a recorded sum is read from record 0
    /// so the sum covers every vector; a damaged graph (see the module docs) is rebuilt from
    /// record 0, and `progress` is told why. A new graph is built with `params` (the index's,
    /// from its manifest).
    pub fn sync<'c, I>(
        dir: &Path,
        source: impl FnOnce(u64, u64) -> I,
        dim: usize,
        to: u64,
        params: &HnswParams,
        progress: &mut dyn FnMut(&str),
    ) -> Result<usize>
    where
        I: Iterator<Item = Result<(u64, Vec<f32>)>> + 'c,
    {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut old = usable_state(dir, dim, progress);
        if old
            .as_ref()
            .is_some_and(|s| s.upto >= to && (s.points == 0 || s.sum.is_some()))
        {
            return Ok(0);
        }
        progress(&format!("up to record {to}"));
        let loaded = match &old {
            Some(state) if state.points > 0 => match load_graph(dir, state) {
                Ok(hnsw) => Some(hnsw),
                Err(e) => {
                    progress(&format!("{e}: rebuilding it from the catalog"));
                    old = None;
                    None
                }
            },
            _ => None,
        };
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
        let expected = to.saturating_sub(from) as usize + old.as_ref().map_or(0, |s| s.points);
        let hnsw = loaded.unwrap_or_else(|| {
            Hnsw::new(
                params.max_connections,
                expected.max(1),
                MAX_LAYERS,
                params.ef_construction,
                UnitDot,
            )
        });
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
                    blake3: None,
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
        let blake3 = Some(seal_dump(dir, &basename)?);
        write_state(
            dir,
            &State {
                basename: basename.clone(),
                points,
                upto: to,
                dim,
                sum,
                blake3,
            },
        )?;
        let previous = old.as_ref().map_or("", |o| o.basename.as_str());
        remove_other_dumps(dir, &[&basename, previous])?;
        Ok(added)
    }

    /// The normalised mean of every vector in the graph (the "mean prompt" of a prompt
    /// graph); `None` for a graph written before sums were kept, until a writer syncs it.
    pub fn mean(&self) -> Option<&[f32]> {
        self.mean.as_deref()
    }

    /// The record ids in the graph, in no particular order (each id once per vector; for
    /// checking a graph against the catalog).
    pub fn ids(&self) -> Vec<u64> {
        self.hnsw
            .get_point_indexation()
            .into_iter()
            .map(|point| point.get_origin_id() as u64)
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` unit vectors of `dim` values with ids from 0, each a different mix of two axes.
    fn unit_vectors(n: usize, dim: usize) -> Vec<(u64, Vec<f32>)> {
        (0..n)
            .map(|i| {
                let angle = i as f32 * 0.1;
                let mut v = vec![0f32; dim];
                v[i % dim] = angle.cos();
                v[(i + 1) % dim] += angle.sin();
                crate::models::l2_normalize(&mut v);
                (i as u64, v)
            })
            .collect()
    }

    #[test]
    fn a_new_graph_is_built_with_the_parameters_given() {
        let dir = tempfile::tempdir().unwrap();
        let params = HnswParams {
            max_connections: 12,
            ef_construction: 50,
        };
        let vectors = unit_vectors(40, 8);
        let source =
            |from: u64, to: u64| vectors[from as usize..to as usize].iter().cloned().map(Ok);
        let added = VectorIndex::sync(dir.path(), source, 8, 40, &params, &mut |_| {}).unwrap();
        assert_eq!(added, 40);
        let state = read_state(dir.path()).unwrap().unwrap();
        let hnsw = load_graph(dir.path(), &state).unwrap();
        assert_eq!(hnsw.get_max_nb_connection(), 12);
        assert_eq!(hnsw.get_ef_construction(), 50);
    }
}
