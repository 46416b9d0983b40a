//! all-MiniLM-L6-v2, exactly as sentence-transformers runs it.
//!
//! Model card: <https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2>. The pipeline is
//! BERT (6 layers, 384 hidden) -> mean pooling over the attention mask -> L2 normalisation, with
//! inputs truncated at 256 word pieces (the model's `max_seq_length`; its `tokenizer.json` says
//! 128 and pads to 128, so both settings are replaced here).
//!
//! Throughput comes from the batching, not from approximations: texts are tokenised once,
//! sorted by length, cut into batches under a token budget (little padding) and run by one
//! single-threaded worker per core, which keeps every core busy on whole matrix products
//! instead of splitting small ones.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::bert::{Bert, Config};
use super::l2_normalize;
use tokenizers::{Tokenizer, TruncationParams};

use super::registry::{ModelSpec, MINILM};
use crate::{Error, Result};

/// Something that turns texts into unit-length vectors.
pub trait TextEmbedder: Send + Sync {
    /// Registry name of the model.
    fn name(&self) -> &str;
    /// sha256 of the weights, recorded in index manifests.
    fn weights_sha256(&self) -> &str;
    /// Vector length.
    fn dim(&self) -> usize;
    /// Embeds `texts`, returning one L2-normalised vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// How the embedder batches and parallelises.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// Word pieces kept per text (sentence-transformers' `max_seq_length`).
    pub max_tokens: usize,
    /// Upper bound on `batch size x padded length` for one forward pass.
    pub batch_tokens: usize,
    /// Upper bound on texts in one forward pass.
    pub max_batch: usize,
    /// Parallel single-threaded model workers; 0 = one per core.
    pub workers: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            // all-MiniLM-L6-v2 was trained and is used at 256 word pieces.
            max_tokens: 256,
            // About 4k tokens keep a layer's activations (4k x 1536 floats) inside L2/L3.
            batch_tokens: 4096,
            max_batch: 128,
            workers: 0,
        }
    }
}

/// The all-MiniLM-L6-v2 sentence embedder.
pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    hidden: usize,
    config: EmbedConfig,
    pools: Vec<rayon::ThreadPool>,
    spec: &'static ModelSpec,
}

/// One tokenised text, ready to batch.
struct Encoded {
    ids: Vec<u32>,
}

impl MiniLm {
    /// Loads the model from a folder holding `model.safetensors`, `tokenizer.json` and
    /// `config.json` (as written by `promptdex models fetch`).
    pub fn load(dir: &Path, config: EmbedConfig) -> Result<Self> {
        let spec = &MINILM;
        let err = |detail: String| Error::model(spec.name, detail);
        let config_path = dir.join("config.json");
        let bert_cfg: Config = serde_json::from_slice(
            &std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?,
        )
        .map_err(|e| err(format!("{}: {e}", config_path.display())))?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| err(format!("{}: {e}", tok_path.display())))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| err(e.to_string()))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(err(format!(
                "{} is missing; run `promptdex models fetch {}`",
                weights.display(),
                spec.name
            )));
        }
        // SAFETY: the file is a verified checkpoint that nothing rewrites while it is mapped.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
                .map_err(|e| err(format!("{}: {e}", weights.display())))?;
        let model = Bert::load(vb, &bert_cfg)
            .map_err(|e| err(format!("{}: not a BERT checkpoint: {e}", weights.display())))?;
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let pools = (0..workers)
            .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| err(format!("thread pool: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            hidden: bert_cfg.hidden_size,
            config,
            pools,
            spec,
        })
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::model(self.spec.name, format!("tokenizer: {e}")))?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().to_vec(),
            })
            .collect())
    }

    /// Groups text indices (longest first) into batches under the token budget.
    fn plan_batches(&self, encoded: &[Encoded]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut batches = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        let mut width = 0;
        for i in order {
            let len = encoded[i].ids.len().max(1);
            let new_width = width.max(len);
            if !current.is_empty()
                && (current.len() >= self.config.max_batch
                    || new_width * (current.len() + 1) > self.config.batch_tokens)
            {
                batches.push(std::mem::take(&mut current));
                width = len;
            } else {
                width = new_width;
            }
            current.push(i);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    /// One forward pass: returns the pooled, normalised vectors of the batch in its order.
    fn forward(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        let sequences: Vec<&[u32]> = batch.iter().map(|e| e.ids.as_slice()).collect();
        let hidden = self.model.forward(&sequences)?;
        let h = self.hidden;
        let mut rows = hidden.chunks_exact(h);
        Ok(batch
            .iter()
            .map(|enc| {
                let mut sum = vec![0f32; h];
                for row in rows.by_ref().take(enc.ids.len()) {
                    for (s, v) in sum.iter_mut().zip(row) {
                        *s += v;
                    }
                }
                let count = enc.ids.len().max(1) as f32;
                sum.iter_mut().for_each(|s| *s /= count);
                l2_normalize(&mut sum);
                sum
            })
            .collect())
    }
}

impl TextEmbedder for MiniLm {
    fn name(&self) -> &str {
        self.spec.name
    }

    fn weights_sha256(&self) -> &str {
        self.spec.weights().sha256
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = self.tokenize(texts)?;
        let batches = self.plan_batches(&encoded);
        if batches.len() == 1 {
            // One batch (a search query): run it on the caller's thread, where each matrix
            // product is split over all cores, for the lowest latency.
            let members: Vec<&Encoded> = batches[0].iter().map(|&i| &encoded[i]).collect();
            let vectors = self.forward(&members)?;
            let mut out = vec![Vec::new(); texts.len()];
            for (&i, v) in batches[0].iter().zip(vectors) {
                out[i] = v;
            }
            return Ok(out);
        }
        let results: Mutex<Vec<Option<Vec<f32>>>> = Mutex::new(vec![None; texts.len()]);
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let workers = self.pools.len().min(batches.len());
        std::thread::scope(|scope| {
            for pool in &self.pools[..workers] {
                scope.spawn(|| {
                    pool.install(|| loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches.len() || failure.lock().is_ok_and(|f| f.is_some()) {
                            break;
                        }
                        let members: Vec<&Encoded> =
                            batches[b].iter().map(|&i| &encoded[i]).collect();
                        match self.forward(&members) {
                            Ok(vectors) => {
                                let mut out = results.lock().expect("results lock");
                                for (&i, v) in batches[b].iter().zip(vectors) {
                                    out[i] = Some(v);
                                }
                            }
                            Err(e) => {
                                *failure.lock().expect("failure lock") = Some(e);
                                break;
                            }
                        }
                    })
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("failure lock") {
            return Err(e);
        }
        Ok(results
            .into_inner()
            .expect("results lock")
            .into_iter()
            .map(|v| v.expect("every text is in exactly one batch"))
            .collect())
    }
}
