//! Image -> tensor for the image encoders.
//!
//! The one preprocessing used everywhere (and mirrored by `scripts/efficientnet_reference.py`
//! with Pillow, so the fixtures and the tests agree):
//! 1. decode, then RGB 8-bit (alpha is dropped, 16-bit is scaled down; EXIF orientation is
//!    not applied);
//! 2. resize so the shorter side equals the model's input size, the longer side to
//!    `round(long * size / short)` (half up), as Pillow's BICUBIC does (Catmull-Rom, the
//!    horizontal pass first and rounded to 8 bits before the vertical one);
//! 3. crop the centre square (offset `(long - size) / 2`, rounded down).
//!
//! Steps 2 and 3 are done together ([`resize_center_crop_with`]): only the square's pixels are
//! computed, from the source region under it, so an extreme aspect ratio costs no more than a
//! square image. A square Stable Diffusion image is seen whole. EfficientNet-Lite then takes
//! `(x - 127) / 128` per channel, in `(N, 3, H, W)` order.

use candle_core::{Device, Tensor};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{CropBox, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::{Error, Result};

/// The size an image is resized to before the centre crop: shorter side `size`, the longer
/// `round(long * size / short)` (half up, at least `size`).
pub fn resized_dims(width: u32, height: u32, size: u32) -> (u64, u64) {
    let scale = |long: u32, short: u32| {
        let scaled = (long as u64 * size as u64 + short as u64 / 2) / short as u64;
        scaled.max(size as u64)
    };
    if width <= height {
        (size as u64, scale(height, width))
    } else {
        (scale(width, height), size as u64)
    }
}

/// Resizes the shorter side to `size` and crops the centre `size x size` square.
pub fn resize_center_crop(image: &RgbImage, size: u32) -> Result<RgbImage> {
    resize_center_crop_with(image, size, resized_dims)
}

/// [`resize_center_crop`] with the resized dimensions chosen by `dims(width, height, size)`
/// (encoders differ in how they round the longer side).
///
/// Only the square is computed: the source region under it, plus the rows the filter reaches
/// beyond it, is resized straight to `size x size` (the same filter taps as resizing the whole
/// image and cropping, so the same pixels up to float rounding), and the whole resized image
/// never exists. An 8192 x 1 image costs what a 224 x 1 one does, not a 1.8 M x 224 buffer.
pub fn resize_center_crop_with(
    image: &RgbImage,
    size: u32,
    dims: fn(u32, u32, u32) -> (u64, u64),
) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w}x{h} image to {size}"
        )));
    }
    let plan = CropPlan::new(w, h, size, dims(w, h, size));
    let rows = horizontal_pass(image, &plan)?;
    vertical_pass(&rows, &plan)
}

/// Catmull-Rom's reach, in output pixels (widened by the scale when shrinking).
const CATMULL_ROM_SUPPORT: f64 = 2.0;

/// Which part of the source a centre crop of the resized image reads.
#[derive(Debug, Clone, PartialEq)]
struct CropPlan {
    /// Side of the square.
    size: u32,
    /// The crop's left edge and width in source columns (fractional).
    columns: (f64, f64),
    /// The crop's top edge and height in source rows (fractional).
    rows: (f64, f64),
    /// The source rows the vertical pass reads: the crop's and the filter's reach around them.
    reach: std::ops::Range<u32>,
}

impl CropPlan {
    /// The crop of a `w x h` image resized to `resized` whose centre square of side `size`
    /// (offset `(side - size) / 2`, rounded down) is kept.
    fn new(w: u32, h: u32, size: u32, resized: (u64, u64)) -> Self {
        let (nw, nh) = (resized.0.max(size as u64), resized.1.max(size as u64));
        // Source pixels per resized pixel and the crop's offset, as a full resize sees them.
        let span = |src: u32, resized: u64| {
            let scale = src as f64 / resized as f64;
            let offset = ((resized - size as u64) / 2) as f64;
            let start = offset * scale;
            (start, (size as f64 * scale).min(src as f64 - start))
        };
        let columns = span(w, nw);
        let rows = span(h, nh);
        let scale = h as f64 / nh as f64;
        let radius = CATMULL_ROM_SUPPORT * scale.max(1.0);
        // First and last output rows' centres, widened by the filter and a pixel of slack.
        let first = rows.0 + 0.5 * scale - radius - 1.0;
        let last = rows.0 + (size as f64 - 0.5) * scale + radius + 1.0;
        let reach = (first.floor().max(0.0) as u32)..(last.ceil().min(h as f64) as u32);
        Self {
            size,
            columns,
            rows,
            reach,
        }
    }
}

/// The crop's columns resized to `size`, for the rows the vertical pass reads (Pillow's
/// first pass, rounded to 8 bits).
fn horizontal_pass(image: &RgbImage, plan: &CropPlan) -> Result<RgbImage> {
    let w = image.width();
    let (top, bottom) = (plan.reach.start as usize, plan.reach.end as usize);
    let row = w as usize * 3;
    let band = &image.as_raw()[top * row..bottom * row];
    let (left, width) = plan.columns;
    let crop = CropBox {
        left,
        top: 0.0,
        width,
        height: (bottom - top) as f64,
    };
    resize_box(band, w, crop, plan.size, (bottom - top) as u32)
}

/// The crop's rows of `band` (the horizontal pass over `plan.reach`) resized to `size`.
fn vertical_pass(band: &RgbImage, plan: &CropPlan) -> Result<RgbImage> {
    let (top, height) = plan.rows;
    let crop = CropBox {
        left: 0.0,
        top: top - plan.reach.start as f64,
        width: plan.size as f64,
        height,
    };
    resize_box(band.as_raw(), band.width(), crop, plan.size, plan.size)
}

/// Resizes the `crop` of the RGB image `pixels` (`width` wide) to `out_w x out_h` with
/// Pillow's BICUBIC in one direction (`fast_image_resize`, Catmull-Rom in 8-bit fixed point);
/// the filter reads pixels outside the crop box where it reaches them. A box that already
/// has the output's size and whole-pixel edges is copied.
fn resize_box(
    pixels: &[u8],
    width: u32,
    crop: CropBox,
    out_w: u32,
    out_h: u32,
) -> Result<RgbImage> {
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("cannot resize: {e}"));
    let height = (pixels.len() / (width as usize * 3)) as u32;
    let src = ImageRef::new(width, height, pixels, PixelType::U8x3).map_err(|e| fail(&e))?;
    let mut dst = Image::new(out_w, out_h, PixelType::U8x3);
    let filter = ResizeAlg::Convolution(fast_image_resize::FilterType::CatmullRom);
    let options =
        ResizeOptions::new()
            .resize_alg(filter)
            .crop(crop.left, crop.top, crop.width, crop.height);
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    RgbImage::from_raw(out_w, out_h, dst.into_vec())
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

    /// A test picture: smooth gradients, noise and hard edges (the overshoot the 8-bit step
    /// between the passes clamps), the same for a given size.
    fn picture(w: u32, h: u32) -> RgbImage {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ ((w as u64) << 32 | h as u64);
        RgbImage::from_fn(w, h, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let edge = if (x / 7 + y / 5) % 2 == 0 { 255 } else { 0 };
            let ramp = ((x * 255) / w.max(1)) as u8;
            image::Rgb([edge, ramp, (seed >> 56) as u8])
        })
    }

    /// The preprocessing as it was: the whole image resized (horizontal pass, then vertical,
    /// each a `fast_image_resize` call), then the centre square cropped out.
    fn resize_whole_then_crop(
        image: &RgbImage,
        size: u32,
        dims: fn(u32, u32, u32) -> (u64, u64),
    ) -> RgbImage {
        let once = |img: &RgbImage, w: u32, h: u32| -> RgbImage {
            if img.dimensions() == (w, h) {
                return img.clone();
            }
            let src =
                ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3).unwrap();
            let mut dst = Image::new(w, h, PixelType::U8x3);
            let alg = ResizeAlg::Convolution(fast_image_resize::FilterType::CatmullRom);
            Resizer::new()
                .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
                .unwrap();
            RgbImage::from_raw(w, h, dst.into_vec()).unwrap()
        };
        let (nw, nh) = dims(image.width(), image.height(), size);
        let (nw, nh) = (nw as u32, nh as u32);
        let rows = once(image, nw, image.height());
        let whole = once(&rows, nw, nh);
        let (left, top) = ((nw - size) / 2, (nh - size) / 2);
        image::imageops::crop_imm(&whole, left, top, size, size).to_image()
    }

    /// CLIP's rounding of the longer side (floor), to run the crop with a second rule.
    fn floor_dims(w: u32, h: u32, size: u32) -> (u64, u64) {
        let long = |l: u32, s: u32| (l as u64 * size as u64 / s as u64).max(size as u64);
        if h < w {
            (long(w, h), size as u64)
        } else {
            (size as u64, long(h, w))
        }
    }

    /// Cropping before resizing gives what resizing the whole image and cropping gave, up to
    /// one level of rounding, for ordinary and moderately extreme shapes, both roundings of
    /// the longer side, shrinking and enlarging.
    #[test]
    fn cropping_first_matches_resizing_the_whole_image() {
        let shapes = [
            (512, 512),
            (768, 576),
            (576, 768),
            (640, 480),
            (480, 640),
            (1024, 683),
            (683, 1024),
            (300, 224),
            (224, 300),
            (225, 224),
            (224, 224),
            (250, 180),
            (100, 150),
            (400, 3),
            (3, 400),
            (1, 1),
        ];
        for dims in [resized_dims, floor_dims] {
            for (w, h) in shapes {
                let img = picture(w, h);
                for size in [224, 260] {
                    let ours = resize_center_crop_with(&img, size, dims).unwrap();
                    let want = resize_whole_then_crop(&img, size, dims);
                    assert_eq!(ours.dimensions(), (size, size), "{w}x{h}");
                    let diffs: Vec<u8> = ours
                        .as_raw()
                        .iter()
                        .zip(want.as_raw())
                        .map(|(&a, &b)| a.abs_diff(b))
                        .collect();
                    let worst = diffs.iter().copied().max().unwrap();
                    let differing = diffs.iter().filter(|&&d| d > 0).count();
                    assert!(worst <= 1, "{w}x{h} to {size}: {worst} levels apart");
                    // Shrinking gives the same bytes. Enlarging differs by a level in about
                    // 0.2% of values: `fast_image_resize` picks its fixed-point precision from
                    // the largest filter weight of the output, and the edge pixels (renormalised
                    // weights) are no longer part of it.
                    assert!(
                        differing * 200 <= diffs.len(),
                        "{w}x{h} to {size}: {differing} of {} values differ",
                        diffs.len()
                    );
                }
            }
        }
    }

    /// The vertical pass reads only the rows under the square and the filter's reach around
    /// them, and the horizontal pass makes only `size` columns of those: an extreme aspect
    /// ratio works on about as many pixels as its square needs, not on the whole resized image
    /// (for 1 x 8192 at 224: 224 x 1.8 M).
    #[test]
    fn extreme_aspect_ratios_read_only_the_square() {
        let size = 224u32;
        for (w, h) in [
            (8192, 1),
            (1, 8192),
            (16_384, 3),
            (3, 16_384),
            (2, 5000),
            (5000, 2),
            (512, 512),
            (576, 768),
        ] {
            let resized = resized_dims(w, h, size);
            let plan = CropPlan::new(w, h, size, resized);
            let rows = plan.reach.len() as f64;
            let scale = h as f64 / resized.1 as f64;
            // The square's rows plus the filter's reach on both sides and the slack.
            let bound = size as f64 * scale + 2.0 * CATMULL_ROM_SUPPORT * scale.max(1.0) + 4.0;
            assert!(
                rows <= bound.min(h as f64),
                "{w}x{h}: {rows} rows, bound {bound}"
            );
            let crop = resize_center_crop(&picture(w, h), size).unwrap();
            assert_eq!(crop.dimensions(), (size, size), "{w}x{h}");
        }
        let tall = CropPlan::new(1, 8192, size, resized_dims(1, 8192, size));
        assert!(tall.reach.len() <= 8, "{:?}", tall.reach);
        let wide = CropPlan::new(8192, 1, size, resized_dims(8192, 1, size));
        assert_eq!(wide.reach, 0..1);
    }

    /// A solid image stays solid whatever its shape (the crop reads the right pixels).
    #[test]
    fn a_solid_extreme_image_crops_to_its_colour() {
        for (w, h) in [(8192, 1), (1, 8192), (3, 16_384)] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([10, 128, 250]));
            let crop = resize_center_crop(&img, 224).unwrap();
            for px in crop.pixels() {
                for (c, want) in px.0.iter().zip([10u8, 128, 250]) {
                    assert!(c.abs_diff(want) <= 1, "{w}x{h}: {px:?}");
                }
            }
        }
    }
}
