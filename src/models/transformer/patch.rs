//! A ViT's patch embedding: class token, patches projected by one product, positions.

use candle_core::Tensor;

use super::dense::Dense;
use crate::models::simd;

/// A ViT's input tokens: the class embedding, then each patch of the image projected by the
/// stride-`patch` convolution (one product over the flattened patches), plus the position
/// embeddings.
pub struct PatchEmbedding {
    projection: Dense,
    class: Vec<f32>,
    positions: Vec<f32>,
    channels: usize,
    size: usize,
    patch: usize,
}

impl PatchEmbedding {
    /// From the convolution's weight `(width, channels, patch, patch)` and optional bias, the
    /// class embedding (`width` values) and the position embeddings (`1 + (size / patch)^2`
    /// rows of `width`), for square images of side `size`.
    pub fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        class: &Tensor,
        positions: &Tensor,
        size: usize,
    ) -> candle_core::Result<Self> {
        let (width, channels, patch, _) = weight.dims4()?;
        let grid = size / patch;
        let positions = positions.flatten_all()?.to_vec1()?;
        if positions.len() != (grid * grid + 1) * width {
            candle_core::bail!("position embeddings do not fit {grid}x{grid} patches");
        }
        Ok(Self {
            projection: Dense::new(weight, bias)?,
            class: class.flatten_all()?.to_vec1()?,
            positions,
            channels,
            size,
            patch,
        })
    }

    /// Tokens per image: the class token and the patches.
    pub fn tokens(&self) -> usize {
        (self.size / self.patch).pow(2) + 1
    }

    /// The tokens of images `(N, channels, size, size)` (flattened, row-major):
    /// `(N * tokens, width)` row-major.
    pub fn forward(&self, pixels: &[f32]) -> Vec<f32> {
        let (c, s, p) = (self.channels, self.size, self.patch);
        let grid = s / p;
        let patches = grid * grid;
        let d = self.projection.outputs();
        let n = pixels.len() / (c * s * s);
        // A row per patch, in the kernel's (channel, dy, dx) order.
        let patch_size = c * p * p;
        let mut columns = vec![0f32; n * patches * patch_size];
        for (image, rows) in pixels
            .chunks_exact(c * s * s)
            .zip(columns.chunks_exact_mut(patches * patch_size))
        {
            for (k, row) in rows.chunks_exact_mut(patch_size).enumerate() {
                let (y, x) = (k / grid * p, k % grid * p);
                for (i, dst) in row.chunks_exact_mut(p).enumerate() {
                    let (ch, dy) = (i / p, i % p);
                    let src = ch * s * s + (y + dy) * s + x;
                    dst.copy_from_slice(&image[src..src + p]);
                }
            }
        }
        let mut embedded = vec![0f32; n * patches * d];
        self.projection
            .forward(&columns, &mut embedded, false, rayon::current_num_threads());
        let len = patches + 1;
        let mut tokens = vec![0f32; n * len * d];
        for (seq, patches) in tokens
            .chunks_exact_mut(len * d)
            .zip(embedded.chunks_exact(patches * d))
        {
            seq[..d].copy_from_slice(&self.class);
            seq[d..].copy_from_slice(patches);
            simd::add_rows(seq, &self.positions);
        }
        tokens
    }
}
