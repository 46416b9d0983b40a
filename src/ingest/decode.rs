//! Decoding an image into pixels: the one way every stage does it (index, generate, search
//! by image, serve, report), under limits that refuse a decompression bomb before its pixels
//! are allocated.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};

use crate::{Error, Result};

/// The formats decoded by default: those SD front-ends write (and GIF, which some galleries
/// hold). The format is read from the content, never from the file name.
pub const IMAGE_FORMATS: &[ImageFormat] = &[
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::WebP,
    ImageFormat::Gif,
];

/// What one image may cost to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
    /// Largest width or height decoded, in pixels.
    pub max_side: u32,
    /// Largest decoder allocation, in bytes.
    pub max_alloc: u64,
    /// The formats accepted; any other content is refused by name.
    pub formats: &'static [ImageFormat],
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            // SD outputs are a few MB; 256 MB is already an unusual image.
            max_file_bytes: 256 << 20,
            // 16k x 16k covers any real SD output or upscale.
            max_side: 16_384,
            // A 16k x 16k RGBA image needs 1 GiB; refuse more before allocating it.
            max_alloc: 1 << 30,
            formats: IMAGE_FORMATS,
        }
    }
}

impl DecodeLimits {
    /// Refuses a file of `size` bytes that is empty or over [`DecodeLimits::max_file_bytes`].
    pub fn check_size(&self, path: &Path, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::input(path, "empty file"));
        }
        if size > self.max_file_bytes {
            return Err(Error::input(
                path,
                format!("{size} bytes, over the {}-byte limit", self.max_file_bytes),
            ));
        }
        Ok(())
    }
}

/// Reads an image file whole, refusing it (by its size on disk, and again while reading, in
/// case it grows) when it is empty or over the limit.
pub fn read_image_file(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    limits.check_size(path, size)?;
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    limits.check_size(path, bytes.len() as u64)?;
    Ok(bytes)
}

/// Decodes an image held in memory to 8-bit RGB; `path` names it in errors.
pub fn decode_image(path: &Path, bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    decode_pixels(path, bytes, limits).map(DynamicImage::into_rgb8)
}

/// Decodes an image held in memory as it is stored (alpha kept, 8 or 16 bits), for a reader
/// of what the pixels carry besides the picture (stealth metadata) before
/// [`DynamicImage::into_rgb8`], which costs nothing for an image that is 8-bit RGB already.
pub fn decode_pixels(path: &Path, bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    if !reader.format().is_some_and(|f| limits.formats.contains(&f)) {
        let names: Vec<&str> = limits.formats.iter().map(format_name).collect();
        return Err(Error::input(
            path,
            format!("not an image in a format read here ({})", names.join(", ")),
        ));
    }
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    reader
        .decode()
        .map_err(|e| Error::input(path, format!("cannot decode: {e}")))
}

/// Reads and decodes an image file: [`read_image_file`] then [`decode_image`].
pub fn load_image(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    decode_image(path, &read_image_file(path, limits)?, limits)
}

fn format_name(format: &ImageFormat) -> &'static str {
    format.extensions_str().first().map_or("?", |e| match *e {
        "jpg" => "JPEG",
        "png" => "PNG",
        "webp" => "WebP",
        "gif" => "GIF",
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::new(width, height)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn decodes_within_limits_and_refuses_over_them() {
        let bytes = png(40, 30);
        let limits = DecodeLimits::default();
        let image = decode_image(Path::new("a.png"), &bytes, &limits).unwrap();
        assert_eq!(image.dimensions(), (40, 30));
        let small = DecodeLimits {
            max_side: 32,
            ..DecodeLimits::default()
        };
        let err = decode_image(Path::new("a.png"), &bytes, &small).unwrap_err();
        assert!(err.to_string().contains("a.png"), "{err}");
    }

    #[test]
    fn refuses_a_format_not_listed_by_name() {
        let limits = DecodeLimits {
            formats: &[ImageFormat::Jpeg],
            ..DecodeLimits::default()
        };
        let err = decode_image(Path::new("b.png"), &png(4, 4), &limits).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("b.png") && text.contains("(JPEG)"), "{text}");
        let err = decode_image(Path::new("c.txt"), b"hello", &DecodeLimits::default());
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("PNG, JPEG, WebP, GIF"));
    }

    #[test]
    fn refuses_empty_and_oversized_files_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        let err = read_image_file(&empty, &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("empty file"), "{err}");
        let big = dir.path().join("big.png");
        std::fs::write(&big, png(8, 8)).unwrap();
        let tiny = DecodeLimits {
            max_file_bytes: 10,
            ..DecodeLimits::default()
        };
        let err = load_image(&big, &tiny).unwrap_err();
        assert!(err.to_string().contains("over the 10-byte limit"), "{err}");
        assert_eq!(
            load_image(&big, &DecodeLimits::default()).unwrap().width(),
            8
        );
    }
}
