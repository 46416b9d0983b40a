//! Thumbnails of the evaluated images, as small JPEGs beside the page.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;

use crate::ingest::{load_image, DecodeLimits};

/// Longest side of a thumbnail, in pixels.
pub const SIZE: u32 = 128;
/// JPEG quality of the thumbnails.
const QUALITY: u8 = 85;

/// Finds an image named in an eval report: as written (absolute, or relative to the current
/// directory), else relative to the folder of the report file.
pub fn locate(image: &str, report_dir: &Path) -> Option<PathBuf> {
    let path = Path::new(image);
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let beside = report_dir.join(path);
    (path.is_relative() && beside.is_file()).then_some(beside)
}

/// Writes a thumbnail of `source` (at most [`SIZE`] pixels a side) as a JPEG at `target`;
/// the error says why the image could not be read or written.
pub fn write(source: &Path, target: &Path) -> Result<(), String> {
    let decoded = load_image(source, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    let small = image::DynamicImage::ImageRgb8(decoded)
        .thumbnail(SIZE, SIZE)
        .to_rgb8();
    let file = std::fs::File::create(target).map_err(|e| format!("{}: {e}", target.display()))?;
    JpegEncoder::new_with_quality(BufWriter::new(file), QUALITY)
        .encode_image(&small)
        .map_err(|e| format!("{}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_fit_and_broken_images_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("wide.png");
        image::RgbImage::from_pixel(400, 200, image::Rgb([200, 10, 10]))
            .save(&source)
            .unwrap();
        let target = tmp.path().join("t.jpg");
        write(&source, &target).unwrap();
        let thumb = image::open(&target).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (SIZE, SIZE / 2));

        let broken = tmp.path().join("broken.png");
        std::fs::write(&broken, b"not a png").unwrap();
        assert!(write(&broken, &target).unwrap_err().contains("broken.png"));
        assert!(write(&tmp.path().join("gone.png"), &target).is_err());

        assert_eq!(locate("wide.png", tmp.path()), Some(source.clone()));
        assert_eq!(
            locate(source.to_str().unwrap(), Path::new("/")),
            Some(source)
        );
        assert_eq!(locate("gone.png", tmp.path()), None);
    }
}
