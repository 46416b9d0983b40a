//! Image -> tensor for the image encoders.
//!
//! The one preprocessing used everywhere (and mirrored by `scripts/efficientnet_reference.py`
//! with Pillow, so the fixtures and the tests agree):
//! 1. decode, then RGB 8-bit (alpha is dropped, 16-bit is scaled down; EXIF orientation is
//!    not applied);
//! 2. resize so the shorter side equals the model's input size, the longer side to
//!    `round(long * size / short)` (half up), as Pillow's BICUBIC does
//!    ([`resize_catmull_rom`]);
//! 3. crop the centre square (offset `(long - size) / 2`, rounded down).
//!
//! A square Stable Diffusion image is therefore seen whole. EfficientNet-Lite then takes
//! `(x - 127) / 128` per channel, in `(N, 3, H, W)` order.

use std::path::Path;

use candle_core::{Device, Tensor};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::imageops;
use image::RgbImage;

use crate::{Error, Result};

/// Decodes an image file (PNG, JPEG, WebP or GIF; the format is read from the content) to
/// 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let image = reader
        .decode()
        .map_err(|e| Error::input(path, format!("cannot decode the image: {e}")))?;
    Ok(image.into_rgb8())
}

/// Decodes an image held in memory to 8-bit RGB; `name` is used in errors.
pub fn decode_rgb(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| Error::input(name, format!("cannot decode the image: {e}")))?;
    Ok(image.into_rgb8())
}

/// The size an image is resized to before the centre crop: shorter side `size`.
pub fn resized_dims(width: u32, height: u32, size: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        let scaled = (long as u64 * size as u64 + short as u64 / 2) / short as u64;
        (scaled as u32).max(size)
    };
    if width <= height {
        (size, scale(height, width))
    } else {
        (scale(width, height), size)
    }
}

/// Resizes the shorter side to `size` and crops the centre `size x size` square.
pub fn resize_center_crop(image: &RgbImage, size: u32) -> Result<RgbImage> {
    resize_center_crop_with(image, size, resized_dims)
}

/// [`resize_center_crop`] with the resized dimensions chosen by `dims(width, height, size)`
/// (encoders differ in how they round the longer side).
pub fn resize_center_crop_with(
    image: &RgbImage,
    size: u32,
    dims: fn(u32, u32, u32) -> (u32, u32),
) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w}x{h} image to {size}"
        )));
    }
    let (nw, nh) = dims(w, h, size);
    let resized = if (nw, nh) == (w, h) {
        image.clone()
    } else {
        resize_catmull_rom(image, nw, nh)?
    };
    let (left, top) = ((nw - size) / 2, (nh - size) / 2);
    Ok(imageops::crop_imm(&resized, left, top, size, size).to_image())
}

/// Resizes as Pillow's `BICUBIC` does: the Catmull-Rom cubic, widened when shrinking, in
/// 8-bit fixed point, the horizontal pass first and rounded to 8 bits before the vertical one
/// (vectorised by `fast_image_resize`; one call of it for both directions skips that rounding
/// and lands further from Pillow: 0.2 levels on average instead of 0.1 on real photos).
pub fn resize_catmull_rom(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let rows = resize_once(image, width, image.height())?;
    resize_once(&rows, width, height)
}

/// One `fast_image_resize` call (it skips a direction whose size does not change).
fn resize_once(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    if image.dimensions() == (width, height) {
        return Ok(image.clone());
    }
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("cannot resize: {e}"));
    let (w, h) = image.dimensions();
    let src = ImageRef::new(w, h, image.as_raw(), PixelType::U8x3).map_err(|e| fail(&e))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let filter = ResizeAlg::Convolution(fast_image_resize::FilterType::CatmullRom);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(filter))
        .map_err(|e| fail(&e))?;
    RgbImage::from_raw(width, height, dst.into_vec())
        .ok_or_else(|| Error::Internal("cannot resize: short output buffer".into()))
}

/// Stacks same-sized RGB crops into an `(N, 3, H, W)` f32 tensor holding `(x - 127) / 128`.
pub fn to_tensor(crops: &[RgbImage]) -> Result<Tensor> {
    let Some(first) = crops.first() else {
        return Err(Error::Invalid("no images to stack".into()));
    };
    let (w, h) = first.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; crops.len() * 3 * plane];
    for (crop, dst) in crops.iter().zip(data.chunks_mut(3 * plane)) {
        if crop.dimensions() != (w, h) {
            return Err(Error::Invalid(format!(
                "crops differ in size: {:?} and {:?}",
                crop.dimensions(),
                (w, h)
            )));
        }
        for (i, px) in crop.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                dst[c * plane + i] = (px[c] as f32 - 127.0) / 128.0;
            }
        }
    }
    Ok(Tensor::from_vec(
        data,
        (crops.len(), 3, h as usize, w as usize),
        &Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_becomes_the_input_size() {
        assert_eq!(resized_dims(512, 512, 224), (224, 224));
        assert_eq!(resized_dims(768, 576, 224), (299, 224));
        assert_eq!(resized_dims(576, 768, 224), (224, 299));
        assert_eq!(resized_dims(1000, 10, 224), (22400, 224));
    }

    #[test]
    fn crop_is_centred_and_normalised() {
        let mut img = RgbImage::new(300, 224);
        for (x, _, px) in img.enumerate_pixels_mut() {
            *px = image::Rgb([x as u8, 127, 255]);
        }
        let crop = resize_center_crop(&img, 224).unwrap();
        assert_eq!(crop.dimensions(), (224, 224));
        assert_eq!(crop.get_pixel(0, 0)[0], 38);
        let t = to_tensor(&[crop]).unwrap();
        assert_eq!(t.dims(), &[1, 3, 224, 224]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v[0], (38.0 - 127.0) / 128.0);
        assert_eq!(v[224 * 224], 0.0);
        assert_eq!(v[2 * 224 * 224], 1.0);
    }
}
