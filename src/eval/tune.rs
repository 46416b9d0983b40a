//! Tuning the ensemble weights on a labelled set.
//!
//! The candidates of every image are kept fixed (as generated with the current weights) and
//! the kind weights are searched coordinate by coordinate over a grid, keeping a change only
//! when the mean score rises. Which candidates are retrieved also depends on the weights (the
//! corpus query and the modifier scores use them), so a tuned set is confirmed by a fresh run.

use crate::generate::{ensemble::combine, Generated, Weights};
use crate::store::dot;

/// Values tried for each weight.
const GRID: [f32; 8] = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
/// Passes over the coordinates.
const ROUNDS: usize = 3;

/// The weights that maximise the mean ensemble score over `(generation, truth vector)` pairs,
/// starting from `start`, with that mean.
pub fn tune_weights(samples: &[(&Generated, &[f32])], start: Weights) -> (Weights, f32) {
    let score = |w: &Weights| -> f32 {
        let total: f32 = samples
            .iter()
            .map(|(generated, truth)| {
                let mut parts = generated.parts.clone();
                dot(&combine(&mut parts, w), truth)
            })
            .sum();
        total / samples.len().max(1) as f32
    };
    let mut best = start;
    let mut best_score = score(&best);
    for _ in 0..ROUNDS {
        let mut improved = false;
        for coordinate in 0..7 {
            for value in GRID {
                let mut trial = best;
                *field(&mut trial, coordinate) = value;
                let s = score(&trial);
                if s > best_score + 1e-6 {
                    best = trial;
                    best_score = s;
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    (best, best_score)
}

fn field(w: &mut Weights, coordinate: usize) -> &mut f32 {
    match coordinate {
        0 => &mut w.caption,
        1 => &mut w.tags,
        2 => &mut w.neighbours,
        3 => &mut w.corpus,
        4 => &mut w.modifiers,
        5 => &mut w.cross_modal,
        _ => &mut w.prior,
    }
}
