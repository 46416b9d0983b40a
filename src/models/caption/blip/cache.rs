//! The decoder's key/value cache, kept between decoding steps: each row's self-attention
//! keys and values so far and each layer's image keys and values, reordered for beam search.

/// Keys and values kept between decoding steps.
pub(super) struct DecoderCache {
    /// Per row, per layer: the self-attention keys and values so far, a row of
    /// `2 width` per token (keys, then values).
    pub(super) past: Vec<Vec<Vec<f32>>>,
    /// Per layer: the cross-attention keys and values, `(images, 2, heads, tokens, head)`
    /// row-major (keys, then values; each head's block contiguous, so a step streams it);
    /// the `group` consecutive rows of an image (its beams) share them.
    pub(super) image: Vec<Vec<f32>>,
    /// Tokens seen so far (the position of the next one).
    pub(super) len: usize,
    /// Rows per image.
    pub(super) group: usize,
}

impl DecoderCache {
    /// Reorders (and subsets) the rows of the self-attention cache.
    pub(super) fn select_rows(&mut self, rows: &[u32]) {
        self.past = rows
            .iter()
            .map(|&r| self.past[r as usize].clone())
            .collect();
    }

    /// Keeps the images at positions `keep` (in the current order), with their rows.
    pub(super) fn keep_images(&mut self, keep: &[u32]) {
        let images = self.past.len() / self.group;
        for kv in &mut self.image {
            let size = kv.len() / images;
            *kv = keep
                .iter()
                .flat_map(|&i| &kv[i as usize * size..(i as usize + 1) * size])
                .copied()
                .collect();
        }
        let g = self.group as u32;
        let rows: Vec<u32> = keep.iter().flat_map(|&i| i * g..(i + 1) * g).collect();
        self.select_rows(&rows);
    }
}
