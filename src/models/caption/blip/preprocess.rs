//! `BlipImageProcessor`'s preprocessing: Pillow-order bicubic resize to the square input,
//! then CLIP's normalisation.

use candle_core::Tensor;
use image::imageops::{self, FilterType};
use image::RgbImage;

use crate::models::image::clip::normalize_stack;
use crate::{Error, Result};

/// Resizes to `size x size` as Pillow does: the horizontal pass first, rounded to 8 bits, then
/// the vertical pass (bicubic, Catmull-Rom as Pillow's BICUBIC, widened when shrinking). Keeping
/// the 8-bit step matters at sharp edges, where the clamped overshoot of the first pass changes
/// the second by up to 9 levels.
///
/// The passes are the `image` crate's (f32): on BLIP's test image, which is enlarged
/// vertically, they land closer to Pillow than `fast_image_resize`'s fixed point (max 1 level
/// against 2); the encoders' shrinking resizes ([`crate::models::image::preprocess`]) use the
/// faster one.
///
/// The first pass's output is `size` wide and as tall as the source, so for a narrow, tall
/// image (narrower than `size` and over 4 times `size` high, e.g. 1 x 8192) that order
/// would cost far more than the image itself: there the vertical pass goes first, which gives
/// the same square up to the rounding between the passes.
pub fn resize_square(image: &RgbImage, size: u32) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w}x{h} image to {size}"
        )));
    }
    let first = if vertical_first(w, h, size) {
        imageops::resize(image, w, size, FilterType::CatmullRom)
    } else {
        imageops::resize(image, size, h, FilterType::CatmullRom)
    };
    Ok(imageops::resize(&first, size, size, FilterType::CatmullRom))
}

/// How many times `size` a source narrower than `size` may be tall before [`resize_square`]
/// runs its vertical pass first (the first pass's output then stays under `TALL size^2` pixels).
const TALL: u64 = 4;

/// Whether [`resize_square`] resizes `w x h` vertically first: when Pillow's order (horizontal
/// first) would make an intermediate larger than both the source and `TALL size^2` pixels.
fn vertical_first(w: u32, h: u32, size: u32) -> bool {
    w < size && h as u64 > TALL * size as u64
}

/// `BlipImageProcessor`'s preprocessing: each image resized to `size x size` ([`resize_square`],
/// no crop, the aspect ratio is not kept), then normalised and stacked as CLIP's input is
/// ([`normalize_stack`]).
pub fn preprocess(images: &[RgbImage], size: usize) -> Result<Tensor> {
    normalize_stack(images, size, resize_square)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::image::clip::{CLIP_MEAN, CLIP_STD};

    #[test]
    fn images_are_squashed_to_the_square_and_normalised() {
        let img = RgbImage::from_pixel(40, 10, image::Rgb([255, 0, 128]));
        let t = preprocess(&[img], 8).unwrap();
        assert_eq!(t.dims(), &[1, 3, 8, 8]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((v[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((v[64] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
        assert!((v[191] - (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2]).abs() < 1e-6);
    }
}
