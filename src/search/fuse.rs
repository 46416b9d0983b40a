//! Reciprocal-rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

use std::collections::HashMap;

/// The usual RRF constant: damps the weight of the very first ranks.
pub const RRF_K: f32 = 60.0;

/// Fuses ranked id lists: each id scores `sum 1 / (k + rank)` over the lists it appears in
/// (ranks from 1). Returns `(id, score)` best first; ties keep first-list order.
pub fn rrf(lists: &[&[u64]], k: f32) -> Vec<(u64, f32)> {
    let mut scores: HashMap<u64, (f32, usize)> = HashMap::new();
    let mut order = 0usize;
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let entry = scores.entry(*id).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(u64, f32, usize)> =
        scores.into_iter().map(|(id, (s, o))| (id, s, o)).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused.into_iter().map(|(id, s, _)| (id, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_beats_a_single_first_place() {
        let bm25 = [1, 2, 3];
        let semantic = [2, 4, 1];
        let fused = rrf(&[&bm25, &semantic], RRF_K);
        assert_eq!(fused[0].0, 2, "2 is ranked well by both");
        assert_eq!(fused[1].0, 1);
        assert_eq!(fused.len(), 4);
        let expected = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((fused[0].1 - expected).abs() < 1e-7);
    }
}
