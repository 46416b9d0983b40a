//! Decoding loops on [`Blip`]: greedy and beam search as `transformers`' `generate` runs them,
//! with the hypotheses, the candidate ranking and the log-softmax helpers they share.

use candle_core::Tensor;

use super::cache::DecoderCache;
use super::{Blip, Generated};
use crate::Result;

impl Blip {
    /// One decoder step for the rows in `last` (one token each): `(rows, vocab)` logits.
    fn step(&self, last: &[u32], cache: &mut DecoderCache) -> Vec<Vec<f32>> {
        let logits = self.text.forward(last, 1, cache);
        logits
            .chunks_exact(self.text.head.outputs())
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// A decoder cache for `n` images' embeddings, `group` rows each.
    pub(super) fn cache(
        &self,
        image_embeds: &Tensor,
        n: usize,
        group: usize,
    ) -> Result<DecoderCache> {
        let embeds = image_embeds.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.text.cache(&embeds, n, group))
    }

    /// Greedy decoding of `n` images: the most likely token at every step.
    pub(super) fn greedy(&self, image_embeds: &Tensor, n: usize) -> Result<Vec<Generated>> {
        let o = self.options;
        let mut cache = self.cache(image_embeds, n, 1)?;
        let mut seqs = vec![vec![self.bos]; n];
        let mut sums = vec![0f32; n];
        // Images still decoding, in cache order.
        let mut active: Vec<usize> = (0..n).collect();
        for step in 0..o.max_tokens {
            let last: Vec<u32> = active.iter().map(|&i| seqs[i][seqs[i].len() - 1]).collect();
            let logits = self.step(&last, &mut cache);
            let mut keep = Vec::with_capacity(active.len());
            for (pos, (&image, row)) in active.iter().zip(&logits).enumerate() {
                let banned = (step < o.min_tokens).then_some(self.sep as usize);
                let token = argmax(row, banned);
                sums[image] += log_softmax_at(row, token);
                seqs[image].push(token as u32);
                if token as u32 != self.sep {
                    keep.push(pos as u32);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                cache.keep_images(&keep);
                active = keep.iter().map(|&p| active[p as usize]).collect();
            }
        }
        Ok(seqs
            .into_iter()
            .zip(sums)
            .map(|(ids, sum)| {
                let generated = (ids.len() - 1).max(1) as f32;
                Generated {
                    ids,
                    score: sum / generated,
                }
            })
            .collect())
    }

    /// Beam search over `width` hypotheses per image for `n` images.
    pub(super) fn beam(
        &self,
        image_embeds: &Tensor,
        n: usize,
        width: usize,
    ) -> Result<Vec<Generated>> {
        let o = self.options;
        let mut cache = self.cache(image_embeds, n, width)?;
        let mut states: Vec<BeamState> = (0..n).map(|_| BeamState::new(self.bos, width)).collect();
        let mut active: Vec<usize> = (0..n).collect();
        for step in 0..o.max_tokens {
            let last: Vec<u32> = active
                .iter()
                .flat_map(|&i| states[i].running.iter().map(|h| h.ids[h.ids.len() - 1]))
                .collect();
            let logits = self.step(&last, &mut cache);
            let rule = StepRule {
                step,
                at_max: step + 1 >= o.max_tokens,
                banned: (step < o.min_tokens).then_some(self.sep as usize),
                sep: self.sep,
                width,
            };
            let mut rows = Vec::with_capacity(last.len());
            let mut keep = Vec::with_capacity(active.len());
            for (pos, &image) in active.iter().enumerate() {
                let beam_logits = &logits[pos * width..(pos + 1) * width];
                if let Some(origins) = states[image].advance(beam_logits, &rule) {
                    rows.extend(origins.iter().map(|&b| (pos * width + b) as u32));
                    keep.push(pos as u32);
                }
            }
            if keep.is_empty() {
                break;
            }
            cache.select_rows(&surviving_rows(&keep, &rows, active.len(), width));
            if keep.len() < active.len() {
                cache.keep_images(&keep);
                active = keep.iter().map(|&p| active[p as usize]).collect();
            }
        }
        Ok(states.into_iter().map(|s| s.best(self.bos)).collect())
    }
}

/// The cache rows after a beam step: for each of the `active` images, the rows its surviving
/// beams came from (`picked`, `width` per kept image, in the order of `keep`), or its own rows
/// unchanged when it finished (those are dropped next).
fn surviving_rows(keep: &[u32], picked: &[u32], active: usize, width: usize) -> Vec<u32> {
    let mut full_rows = Vec::with_capacity(active * width);
    let mut kept = keep.iter().peekable();
    let mut picked = picked.chunks(width);
    for pos in 0..active as u32 {
        if kept.peek() == Some(&&pos) {
            kept.next();
            full_rows.extend_from_slice(picked.next().unwrap_or(&[]));
        } else {
            let base = pos * width as u32;
            full_rows.extend(base..base + width as u32);
        }
    }
    full_rows
}

/// A hypothesis of beam search: its tokens and score (sum of log-probabilities while running,
/// divided by the generated length once finished).
#[derive(Debug, Clone)]
struct Hypothesis {
    score: f32,
    ids: Vec<u32>,
}

/// What one beam step of every image shares: the step number, whether it is the last, the
/// banned token, the end token and the beam width.
struct StepRule {
    step: usize,
    at_max: bool,
    banned: Option<usize>,
    sep: u32,
    width: usize,
}

/// Beam search state of one image.
struct BeamState {
    running: Vec<Hypothesis>,
    finished: Vec<Hypothesis>,
}

impl BeamState {
    /// The start: `width` beams of the start token, all but the first out of the running
    /// (as `transformers` starts them, so the first step does not pick one token `width` times).
    fn new(bos: u32, width: usize) -> Self {
        Self {
            running: (0..width)
                .map(|b| Hypothesis {
                    score: if b == 0 { 0.0 } else { -1e9 },
                    ids: vec![bos],
                })
                .collect(),
            finished: Vec::with_capacity(width),
        }
    }

    /// Adds a finished hypothesis, keeping the best `width`.
    fn add_finished(&mut self, h: Hypothesis, width: usize) {
        self.finished.push(h);
        // Stable: among equal scores the earlier stays ahead.
        self.finished.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.finished.truncate(width);
    }

    /// One step from the running beams' `logits`: finishes the candidates that end, and when
    /// the image goes on, makes the best continuations the running beams and returns the beam
    /// each came from; `None` when the image is done (the running beams are then left as
    /// they were).
    fn advance(&mut self, logits: &[Vec<f32>], rule: &StepRule) -> Option<Vec<usize>> {
        let width = rule.width;
        let generated = (rule.step + 1) as f32;
        let candidates = top_candidates(logits, &self.running, rule.banned, 2 * width);
        let mut next = Vec::with_capacity(width);
        let mut origins = Vec::with_capacity(width);
        for (rank, &(score, beam, token)) in candidates.iter().enumerate() {
            let ends = token as u32 == rule.sep || rule.at_max;
            if ends {
                // Only the best `width` candidates may finish, as in `transformers`.
                if rank < width {
                    let mut ids = self.running[beam].ids.clone();
                    ids.push(token as u32);
                    let score = score / generated;
                    self.add_finished(Hypothesis { score, ids }, width);
                }
            } else if next.len() < width {
                let mut ids = self.running[beam].ids.clone();
                ids.push(token as u32);
                next.push(Hypothesis { score, ids });
                origins.push(beam);
            }
        }
        // Stop when nothing can continue, or when the best running beam (at its current
        // length) cannot beat the worst of a full set of finished ones.
        let worst = self
            .finished
            .iter()
            .map(|h| h.score)
            .fold(f32::INFINITY, f32::min);
        let can_improve = self.finished.len() < width
            || next.first().is_some_and(|h| h.score / generated > worst);
        let done = rule.at_max || next.len() < width || !can_improve;
        if done {
            return None;
        }
        self.running = next;
        Some(origins)
    }

    /// The best hypothesis, finished or running (the first among equals), as the result;
    /// the bare start token when there is none.
    fn best(self, bos: u32) -> Generated {
        let best = self
            .finished
            .into_iter()
            .chain(self.running)
            .reduce(|a, b| if b.score > a.score { b } else { a });
        let best = best.unwrap_or(Hypothesis {
            score: 0.0,
            ids: vec![bos],
        });
        Generated {
            ids: best.ids,
            score: best.score,
        }
    }
}
/// The `k` best continuations `(summed log-prob, beam, token)` over all beams, best first
/// (ties: lower flat index first); `banned` gets no probability.
fn top_candidates(
    logits: &[Vec<f32>],
    running: &[Hypothesis],
    banned: Option<usize>,
    k: usize,
) -> Vec<(f32, usize, usize)> {
    let mut all: Vec<(f32, usize, usize)> = Vec::new();
    for (beam, (row, h)) in logits.iter().zip(running).enumerate() {
        let lse = log_sum_exp(row);
        for (token, &x) in row.iter().enumerate() {
            let logp = if Some(token) == banned {
                f32::NEG_INFINITY
            } else {
                x - lse
            };
            all.push((logp + h.score, beam, token));
        }
    }
    let k = k.min(all.len());
    let order = |a: &(f32, usize, usize), b: &(f32, usize, usize)| {
        b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2)))
    };
    if k < all.len() {
        all.select_nth_unstable_by(k, order);
        all.truncate(k);
    }
    all.sort_by(order);
    all
}

/// Log of the sum of the exponentials of `row`, shifted by its maximum to stay finite.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

/// Log-softmax of `row` at `index`.
fn log_softmax_at(row: &[f32], index: usize) -> f32 {
    row[index] - log_sum_exp(row)
}

/// Index of the first largest value, skipping `banned`.
fn argmax(row: &[f32], banned: Option<usize>) -> usize {
    let mut best = usize::MAX;
    for (i, &x) in row.iter().enumerate() {
        if Some(i) == banned {
            continue;
        }
        if best == usize::MAX || x > row[best] {
            best = i;
        }
    }
    best.min(row.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_best_and_skips_the_banned() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], None), 1);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], Some(1)), 2);
        assert_eq!(argmax(&[5.0, 1.0], Some(0)), 1);
    }

    #[test]
    fn candidates_are_summed_log_probs_best_first() {
        let logits = vec![vec![0.0, 1.0, 2.0], vec![2.0, 0.0, 0.0]];
        let running = vec![
            Hypothesis {
                score: 0.0,
                ids: vec![9],
            },
            Hypothesis {
                score: -1e9,
                ids: vec![9],
            },
        ];
        let top = top_candidates(&logits, &running, None, 2);
        assert_eq!((top[0].1, top[0].2), (0, 2));
        assert_eq!((top[1].1, top[1].2), (0, 1));
        let lse = log_sum_exp(&logits[0]);
        assert!((top[0].0 - (2.0 - lse)).abs() < 1e-6);
        let banned = top_candidates(&logits, &running, Some(2), 2);
        assert_eq!((banned[0].1, banned[0].2), (0, 1));
    }
}
