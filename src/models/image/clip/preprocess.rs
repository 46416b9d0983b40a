//! CLIP's image preprocessing: shorter side resized, centre crop, then normalised with
//! CLIP's mean and standard deviation ([`normalize_stack`], which BLIP shares).

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::{Error, Result};

/// CLIP's per-channel pixel mean (RGB, on the 0..1 scale).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel pixel standard deviation (RGB, on the 0..1 scale): 0.26862954,
/// 0.26130258, 0.27577711 as f32.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Resizes the shorter side to `size` with bicubic (Catmull-Rom, as Pillow's BICUBIC) and
/// crops the centre square, like OpenAI CLIP's torchvision pipeline and `transformers`'
/// `CLIPImageProcessor`: the longer side becomes `floor(long * size / short)` and the crop
/// starts at `(side - size) / 2`, rounded down.
pub fn resize_center_crop(image: &RgbImage, size: u32) -> Result<RgbImage> {
    crate::models::image::preprocess::resize_center_crop_with(image, size, floor_dims)
}

/// The shorter side becomes `size`, the longer `floor(long * size / short)` (at least `size`).
fn floor_dims(w: u32, h: u32, size: u32) -> (u64, u64) {
    let size = size as u64;
    let long = |l: u32, s: u32| (l as u64 * size / s as u64).max(size);
    if h < w {
        (long(w, h), size)
    } else {
        (size, long(h, w))
    }
}

/// CLIP's preprocessing: [`resize_center_crop`] to `size`, then [`normalize_stack`].
pub fn preprocess(images: &[RgbImage], size: usize) -> Result<Tensor> {
    normalize_stack(images, size, resize_center_crop)
}

/// Each image made `size x size` by `resize`, then `(x / 255 - mean) / std` per channel
/// ([`CLIP_MEAN`], [`CLIP_STD`]), stacked as an `(N, 3, size, size)` f32 tensor: the input of
/// CLIP's and BLIP's vision towers.
pub fn normalize_stack(
    images: &[RgbImage],
    size: usize,
    resize: impl Fn(&RgbImage, u32) -> Result<RgbImage>,
) -> Result<Tensor> {
    if images.is_empty() {
        return Err(Error::Invalid("no images to preprocess".into()));
    }
    let plane = size * size;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (image, dst) in images.iter().zip(data.chunks_mut(3 * plane)) {
        let square = resize(image, size as u32)?;
        for (i, px) in square.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                dst[c * plane + i] = (px[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
    }
    Ok(Tensor::from_vec(
        data,
        (images.len(), 3, size, size),
        &Device::Cpu,
    )?)
}
