//! Following the index while serving: records added by `promptdex import` or `index` after the
//! server started become searchable within seconds.
//!
//! A background thread reads the index's [`IndexWatermark`] every few seconds (a handful of
//! small files: the text index's commit, each graph's `state.json`, the manifest). When it
//! differs from the one being served, the thread reopens the index ([`open_reader`]), builds a
//! [`Generator`] over it that shares the loaded models ([`Generator::with_index`]), and swaps
//! it in as the next [`Served`] generation. Handlers take the current generation once per
//! request ([`Following::current`]), so a request in flight finishes on the reader it started
//! with, and no request waits for a reopen. A reopen that fails (a writer between two files,
//! an index damaged on disk) keeps the old generation and is tried again at the next check.
//! A backend whose readers answer from a live engine (Milvus) has no watermark: there is
//! nothing to reopen, and what writers add is searchable once the engine has it.

use std::path::Path;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::generate::Generator;
use crate::store::{open_reader, IndexRead, IndexWatermark};
use crate::{Error, Result};

/// One generation of the index with the models: what a request works on, start to end.
pub struct Served {
    /// The index and models.
    pub generator: Arc<Generator>,
    /// 0 for the index opened at start, one more at each reopen.
    pub generation: u64,
    /// The index's watermark when this generation was opened (`None` for a backend that is
    /// always live: nothing to follow).
    pub watermark: Option<IndexWatermark>,
    /// Bytes the index took on disk then, where the backend can tell.
    pub index_bytes: Option<u64>,
}

impl Served {
    /// The first generation, over `generator`'s index.
    pub fn first(generator: Generator) -> Result<Self> {
        let watermark = generator.index().watermark()?;
        let index_bytes = generator.index().stats()?.bytes;
        Ok(Self {
            generator: Arc::new(generator),
            generation: 0,
            watermark,
            index_bytes,
        })
    }

    /// The generation after this one when the index's watermark has moved (`None` when it
    /// has not): the index reopened under the same models.
    pub fn next(&self) -> Result<Option<Self>> {
        let old = self.generator.index();
        let watermark = old.watermark()?;
        if watermark.is_none() || watermark == self.watermark {
            return Ok(None);
        }
        let index = open_reader(old.location(), Some(old.manifest()))?;
        check_image_model(old.location().path(), &self.generator, index.as_ref())?;
        let index_bytes = index.stats()?.bytes;
        Ok(Some(Self {
            generator: Arc::new(self.generator.with_index(index)?),
            generation: self.generation + 1,
            watermark,
            index_bytes,
        }))
    }
}

/// Refuses an index whose images now come from another encoder than the one loaded (an index
/// that had none when the server started loaded the default encoder).
fn check_image_model(dir: &Path, generator: &Generator, index: &dyn IndexRead) -> Result<()> {
    let recorded = index
        .manifest()
        .image_model
        .as_ref()
        .map(|m| m.name.as_str());
    let loaded = generator.models().image.as_ref().map(|e| e.name());
    match recorded {
        Some(name) if Some(name) != loaded => Err(Error::index(
            dir,
            format!(
                "its images are now embedded with {name}, but the server loaded {}; restart \
                 the server to serve them",
                loaded.unwrap_or("no image encoder")
            ),
        )),
        _ => Ok(()),
    }
}

/// The generation being served, replaced whole when the index moves on.
pub struct Following {
    current: RwLock<Arc<Served>>,
}

impl Following {
    /// Starts at `first`.
    pub fn new(first: Served) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// The generation to answer a request with (the lock is held only to clone an `Arc`).
    pub fn current(&self) -> Arc<Served> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Checks the index once and swaps in its next generation if it moved. Returns whether
    /// it did.
    pub fn check(&self) -> Result<bool> {
        let Some(next) = self.current().next()? else {
            return Ok(false);
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(true)
    }
}

/// Checks the index every `interval` on a thread of its own for as long as `following` lives,
/// printing each reopen, and each new failure, on stderr.
pub fn spawn_follower(following: Weak<Following>, interval: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("index-follower".into())
        .spawn(move || {
            let mut last_error = None;
            loop {
                std::thread::sleep(interval);
                let Some(following) = following.upgrade() else {
                    return;
                };
                let start = Instant::now();
                match following.check() {
                    Ok(true) => {
                        let served = following.current();
                        eprintln!(
                            "index moved on: serving generation {} (records up to {}), \
                             reopened in {:.1} s",
                            served.generation,
                            served.watermark.as_ref().map_or(0, |w| w.records),
                            start.elapsed().as_secs_f64()
                        );
                        last_error = None;
                    }
                    Ok(false) => last_error = None,
                    Err(e) => {
                        let message = e.to_string();
                        if last_error.as_ref() != Some(&message) {
                            eprintln!("index not reopened (serving the previous one): {message}");
                        }
                        last_error = Some(message);
                    }
                }
            }
        })
        .map(|_| ())
}
