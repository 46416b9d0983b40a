//! Vectors computed once per index and kept beside it (class-name and vocabulary embeddings).
//!
//! A cache file is `DIR/cache/NAME-KEY.f32`: the rows as little-endian f32, where KEY hashes
//! the model and the texts, so a changed model or list is recomputed, never misread. Files are
//! written atomically and durably ([`crate::fsio::write_atomic`]), so concurrent readers of a shared index see a
//! whole file or none; an index folder that cannot be written just means recomputing.

use std::path::{Path, PathBuf};

use crate::Result;

/// The `dim`-wide vectors of `texts`, from the cache in `dir` (its `cache/` folder) or
/// computed by `embed` (and then stored). `model` names the embedder (its checksum) for the
/// cache key, so one folder may hold the caches of many models.
pub fn cached_vectors(
    dir: &Path,
    name: &str,
    model: &str,
    texts: &[String],
    dim: usize,
    embed: impl FnOnce(&[&str]) -> Result<Vec<Vec<f32>>>,
) -> Result<Vec<Vec<f32>>> {
    let path = cache_path(dir, name, model, texts);
    if let Some(rows) = read(&path, texts.len(), dim) {
        return Ok(rows);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rows = embed(&refs)?;
    // Best effort: a read-only folder still works, it recomputes next time.
    let _ = write(&path, &rows);
    Ok(rows)
}

fn cache_path(index_dir: &Path, name: &str, model: &str, texts: &[String]) -> PathBuf {
    let mut hasher = blake3::Hasher::new();
    hasher.update(model.as_bytes());
    for text in texts {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    let key = hasher.finalize().to_hex();
    index_dir
        .join("cache")
        .join(format!("{name}-{}.f32", &key.as_str()[..16]))
}

fn read(path: &Path, rows: usize, dim: usize) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() != rows * dim * 4 {
        return None;
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(floats.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}

fn write(path: &Path, rows: &[Vec<f32>]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    crate::fsio::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let texts = vec!["a".to_string(), "b".to_string()];
        let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        let first = cached_vectors(dir.path(), "t", "m", &texts, 2, |_| Ok(rows.clone())).unwrap();
        assert_eq!(first, rows);
        let second = cached_vectors(dir.path(), "t", "m", &texts, 2, |_| {
            panic!("should come from the cache")
        })
        .unwrap();
        assert_eq!(second, rows);
        // Another model is another key.
        let other = cached_vectors(dir.path(), "t", "m2", &texts, 2, |_| {
            Ok(vec![vec![0.0; 2]; 2])
        });
        assert_eq!(other.unwrap()[0], [0.0, 0.0]);
    }
}
