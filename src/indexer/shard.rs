//! Sharding without a coordinator: `--shard K/N` gives a worker the inputs whose stable key
//! falls in shard K of N.
//!
//! A corpus row's key is its prompt's de-duplication key ([`crate::ingest::dedup_key`], the
//! same blake3 the stores key prompts by), so a prompt repeated across rows or corpora always
//! lands in the same shard and is stored once. An image file's key is the blake3 of its path
//! ([`crate::store::path_key`]): a worker decides which files are its own from the walk alone,
//! without reading the others (keying by content would make every worker read every file).
//! N workers given the same inputs and shards 1..N cover each input exactly once; rerunning a
//! shard, or running it twice at once, adds nothing twice (stores upsert by stable key).

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// Shard `k` of `n`, both counted from 1 as `--shard K/N` writes them.
    pub fn new(k: u64, n: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::Invalid(format!(
                "--shard {k}/{n}: there must be at least one shard"
            )));
        }
        if k == 0 || k > n {
            return Err(Error::Invalid(format!(
                "--shard {k}/{n}: K counts from 1 to N ({n})"
            )));
        }
        Ok(Self {
            index: k - 1,
            count: n,
        })
    }

    /// True when the input with stable key `key` (any blake3 output) is this shard's.
    pub fn owns(&self, key: &[u8]) -> bool {
        let mut first = [0u8; 8];
        let n = key.len().min(8);
        first[..n].copy_from_slice(&key[..n]);
        u64::from_le_bytes(first) % self.count == self.index
    }

    /// True when the image at `path_key` ([`crate::store::path_key`]) is this shard's.
    pub fn owns_path(&self, path_key: &[u8]) -> bool {
        self.owns(blake3::hash(path_key).as_bytes())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `K/N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Invalid(format!("--shard {s:?}: expected K/N, e.g. 1/4"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k = k.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::dedup_key;

    #[test]
    fn shards_parse_and_refuse_what_is_not_k_of_n() {
        assert_eq!("2/3".parse::<Shard>().unwrap().to_string(), "2/3");
        for (bad, why) in [
            ("3/2", "1 to N"),
            ("0/2", "1 to N"),
            ("1/0", "at least one"),
            ("a/2", "expected K/N"),
            ("2", "expected K/N"),
        ] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    /// Every key belongs to exactly one of N shards, and the shards are roughly even.
    #[test]
    fn every_key_falls_in_exactly_one_shard() {
        let shards: Vec<Shard> = (1..=4).map(|k| Shard::new(k, 4).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for i in 0..4000 {
            let key = dedup_key(&format!("prompt number {i}"));
            let owners: Vec<usize> = (0..4).filter(|&s| shards[s].owns(&key)).collect();
            assert_eq!(owners.len(), 1, "key {i}");
            sizes[owners[0]] += 1;
            let path = format!("/images/{i}.png");
            let owners = (0..4).filter(|&s| shards[s].owns_path(path.as_bytes()));
            assert_eq!(owners.count(), 1, "path {i}");
        }
        assert!(sizes.iter().all(|&n| (850..1150).contains(&n)), "{sizes:?}");
        let one = Shard::new(1, 1).unwrap();
        assert!(one.owns(&dedup_key("anything")));
    }
}
