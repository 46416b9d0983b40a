//! "Stealth" metadata: text hidden in the least significant bits of the pixels, as NovelAI
//! writes it (its `nai_meta.py` reader, github.com/NovelAI/novelai-image-metadata) and the
//! stable-diffusion-webui extension sd-webui-stealth-pnginfo (`scripts/stealth_pnginfo.py`)
//! writes and reads it. The layout both share:
//!
//! - one bit stream, taken column by column (x outer, y inner) from the least significant bit
//!   of the alpha channel (one bit a pixel), or of red, green and blue in that order (three
//!   bits a pixel); eight bits make a byte, most significant first;
//! - a 15-byte signature: `stealth_pnginfo` / `stealth_pngcomp` in alpha, `stealth_rgbinfo` /
//!   `stealth_rgbcomp` in RGB (`comp`: the payload is gzip);
//! - the payload's length in bits, a 32-bit big-endian number;
//! - the payload: UTF-8 text. NovelAI's is a JSON object of its PNG text chunks
//!   (`Description`, `Software`, `Source`, `Comment`, the last itself a JSON string); the
//!   extension's is the A1111 `parameters` text; a SwarmUI or Fooocus JSON object is read too.
//!
//! The signature is checked first and the read stops at the first byte that does not match,
//! so an image without stealth metadata costs a few dozen pixel reads. The payload is held to
//! [`MAX_TEXT_BYTES`] before and after decompression, and its announced length to what the
//! image can hold. Only 8-bit images are read (those are what the writers produce).

use std::io::Read;

use flate2::read::GzDecoder;
use image::DynamicImage;
use serde_json::Value;

use super::params::json_object;
use super::{a1111, generic, novelai, swarm, EmbeddedPrompt, Scan, MAX_TEXT_BYTES};

type Detail = String;

/// Length of every signature, in bytes.
const SIGNATURE_BYTES: usize = 15;

/// Where the bits of a stream are within a pixel.
#[derive(Debug, Clone, Copy)]
enum Lanes {
    /// The alpha channel's LSB.
    Alpha,
    /// The LSBs of red, green and blue.
    Rgb,
}

impl Lanes {
    fn name(self) -> &'static str {
        match self {
            Lanes::Alpha => "alpha",
            Lanes::Rgb => "RGB",
        }
    }

    /// The signature of an uncompressed and of a gzip payload in these lanes.
    fn signatures(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Lanes::Alpha => (b"stealth_pnginfo", b"stealth_pngcomp"),
            Lanes::Rgb => (b"stealth_rgbinfo", b"stealth_rgbcomp"),
        }
    }
}

/// An 8-bit image's samples, interleaved: `channels` a pixel, alpha last when there is one.
struct Pixels<'a> {
    raw: &'a [u8],
    width: u64,
    height: u64,
    channels: usize,
    has_alpha: bool,
    has_rgb: bool,
}

impl<'a> Pixels<'a> {
    /// The samples of an 8-bit image; `None` for any other sample type.
    fn of(image: &'a DynamicImage) -> Option<Self> {
        let (raw, channels, has_rgb): (&[u8], usize, bool) = match image {
            DynamicImage::ImageRgba8(buf) => (buf.as_raw(), 4, true),
            DynamicImage::ImageRgb8(buf) => (buf.as_raw(), 3, true),
            DynamicImage::ImageLumaA8(buf) => (buf.as_raw(), 2, false),
            _ => return None,
        };
        Some(Pixels {
            raw,
            width: u64::from(image.width()),
            height: u64::from(image.height()),
            channels,
            has_alpha: channels != 3,
            has_rgb,
        })
    }

    /// The lanes this image has, alpha first.
    fn lanes(&self) -> impl Iterator<Item = Lanes> {
        let alpha = self.has_alpha.then_some(Lanes::Alpha);
        let rgb = self.has_rgb.then_some(Lanes::Rgb);
        alpha.into_iter().chain(rgb)
    }
}

/// The bit stream of one set of lanes, column by column.
struct Bits<'a> {
    pixels: &'a Pixels<'a>,
    /// Channel offsets within a pixel, in stream order.
    offsets: &'static [usize],
    /// Index of the next bit in the stream.
    next: u64,
    /// Bits in the stream.
    total: u64,
}

impl<'a> Bits<'a> {
    fn new(pixels: &'a Pixels<'a>, lanes: Lanes) -> Self {
        let offsets: &'static [usize] = match (lanes, pixels.channels) {
            (Lanes::Rgb, _) => &[0, 1, 2],
            (Lanes::Alpha, 2) => &[1],
            (Lanes::Alpha, _) => &[3],
        };
        let total = pixels.width * pixels.height * offsets.len() as u64;
        Bits {
            pixels,
            offsets,
            next: 0,
            total,
        }
    }

    /// Bits left in the stream.
    fn remaining(&self) -> u64 {
        self.total - self.next
    }

    fn bit(&mut self) -> Option<u8> {
        if self.next >= self.total {
            return None;
        }
        let per_pixel = self.offsets.len() as u64;
        let (pixel, lane) = (self.next / per_pixel, (self.next % per_pixel) as usize);
        let (x, y) = (pixel / self.pixels.height, pixel % self.pixels.height);
        let at = (y * self.pixels.width + x) as usize * self.pixels.channels + self.offsets[lane];
        self.next += 1;
        Some(self.pixels.raw[at] & 1)
    }

    fn byte(&mut self) -> Option<u8> {
        (0..8).try_fold(0u8, |byte, _| Some((byte << 1) | self.bit()?))
    }

    /// Whether the stream starts with `signature` (a mismatch stops at its first byte).
    fn starts_with(&mut self, signature: &[u8]) -> bool {
        signature.iter().all(|&want| self.byte() == Some(want))
    }
}

/// The prompt hidden in `image`'s pixels, if any; a stealth payload that cannot be read (too
/// long, bad gzip, not UTF-8, JSON that does not parse) is noted in `scan`.
pub(super) fn read_stealth(image: &DynamicImage, scan: &mut Scan) -> Option<EmbeddedPrompt> {
    let pixels = Pixels::of(image)?;
    for lanes in pixels.lanes() {
        let Some((signature, gzip)) = signature_of(&pixels, lanes) else {
            continue;
        };
        let mut bits = Bits::new(&pixels, lanes);
        bits.next = 8 * SIGNATURE_BYTES as u64;
        let location = format!(
            "pixels ({} LSB, {})",
            lanes.name(),
            String::from_utf8_lossy(signature)
        );
        let parsed = payload(&mut bits, gzip).and_then(|text| parse_payload(&text));
        match parsed {
            Ok(found) => return found.map(|f| f.at(location)),
            Err(detail) => scan.ignored(location, detail),
        }
    }
    None
}

/// The signature at the start of `lanes` and whether it announces gzip.
fn signature_of(pixels: &Pixels, lanes: Lanes) -> Option<(&'static [u8], bool)> {
    let (plain, compressed) = lanes.signatures();
    // Both signatures share their first 11 bytes: read those once, then the last four.
    let common = plain.len() - 4;
    let mut bits = Bits::new(pixels, lanes);
    if !bits.starts_with(&plain[..common]) {
        return None;
    }
    let after = bits.next;
    [(plain, false), (compressed, true)]
        .into_iter()
        .find(|(signature, _)| {
            bits.next = after;
            bits.starts_with(&signature[common..])
        })
}

/// The payload after the signature: its length, then its bytes, gunzipped when `gzip`, as text.
fn payload(bits: &mut Bits, gzip: bool) -> Result<String, Detail> {
    let mut length = [0u8; 4];
    for byte in &mut length {
        *byte = bits
            .byte()
            .ok_or("the image ends inside the payload length")?;
    }
    let length_bits = u64::from(u32::from_be_bytes(length));
    let bytes = (length_bits / 8) as usize;
    if bytes > MAX_TEXT_BYTES {
        return Err(format!(
            "payload of {bytes} bytes, over the {MAX_TEXT_BYTES}-byte limit for metadata"
        ));
    }
    let left = bits.remaining();
    if length_bits > left {
        return Err(format!(
            "the payload is announced as {length_bits} bits but the image holds only {left} more"
        ));
    }
    let mut data = Vec::with_capacity(bytes);
    for _ in 0..bytes {
        // The length was checked against the bits left: every byte is there.
        data.push(bits.byte().ok_or("the image ends inside the payload")?);
    }
    if gzip {
        data = gunzip(&data)?;
    }
    String::from_utf8(data).map_err(|e| format!("the payload is not UTF-8 text ({e})"))
}

/// gzip-decompresses at most [`MAX_TEXT_BYTES`].
fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, Detail> {
    let mut out = Vec::new();
    GzDecoder::new(compressed)
        .take(MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip data ({e})"))?;
    if out.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "the payload decompresses to over the {MAX_TEXT_BYTES}-byte limit"
        ));
    }
    Ok(out)
}

/// The prompt in a payload: NovelAI's JSON of text chunks, a SwarmUI or Fooocus JSON object,
/// or A1111 `parameters` text.
fn parse_payload(text: &str) -> Result<Option<EmbeddedPrompt>, Detail> {
    if !generic::looks_like_json(text) {
        return Ok(a1111::parse_a1111_parameters(text).filter(EmbeddedPrompt::has_text));
    }
    let chunks = json_object(text, "the stealth payload")?;
    if chunks.contains_key("sui_image_params") {
        return swarm::parse_swarm(&chunks);
    }
    let chunk = |key: &str| chunks.get(key).and_then(Value::as_str);
    if chunks.contains_key("Comment") || chunks.contains_key("Description") {
        return novelai::parse_novelai(
            chunk("Description"),
            chunk("Comment"),
            chunk("Software"),
            chunk("Source"),
        );
    }
    generic::parse_json_parameters(text)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;
    use image::{GrayAlphaImage, ImageBuffer, Rgb, RgbImage, RgbaImage};
    use proptest::prelude::*;

    use super::*;
    use crate::ingest::metadata::{Metadata, Provenance, Trouble};
    use crate::ingest::MAX_PROMPT_BYTES;

    const A1111: &str = "a red fox in snow\nNegative prompt: blurry\nSteps: 12, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 64x64";

    /// `stream` hidden in the LSBs of `lanes` of a `side`x`side` image of `channels` (2, 3 or
    /// 4), column by column: the writers' layout, written independently of the reader.
    fn hide(stream: &[u8], lanes: Lanes, channels: usize, side: u32) -> DynamicImage {
        let mut raw: Vec<u8> = (0..side * side * channels as u32)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        let per_pixel = match lanes {
            Lanes::Alpha => 1,
            Lanes::Rgb => 3,
        };
        let capacity = (side * side) as usize * per_pixel;
        let bits = stream
            .iter()
            .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1));
        for (i, bit) in bits.take(capacity).enumerate() {
            let (pixel, lane) = (i / per_pixel, i % per_pixel);
            let (x, y) = (pixel / side as usize, pixel % side as usize);
            let offset = match lanes {
                Lanes::Alpha => channels - 1,
                Lanes::Rgb => lane,
            };
            let at = (y * side as usize + x) * channels + offset;
            raw[at] = (raw[at] & !1) | bit;
        }
        match channels {
            2 => GrayAlphaImage::from_raw(side, side, raw).unwrap().into(),
            3 => RgbImage::from_raw(side, side, raw).unwrap().into(),
            _ => RgbaImage::from_raw(side, side, raw).unwrap().into(),
        }
    }

    /// Signature, length in bits, payload (gzipped when `gzip`).
    fn stream(signature: &[u8], payload: &[u8], gzip: bool) -> Vec<u8> {
        let data = if gzip {
            gzipped(payload)
        } else {
            payload.to_vec()
        };
        let mut out = signature.to_vec();
        out.extend((8 * data.len() as u32).to_be_bytes());
        out.extend(data);
        out
    }

    fn gzipped(payload: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(payload).unwrap();
        encoder.finish().unwrap()
    }

    fn read(image: &DynamicImage) -> (Option<EmbeddedPrompt>, Vec<Trouble>) {
        let mut scan = Scan::new();
        let found = read_stealth(image, &mut scan);
        (found, scan.troubles)
    }

    #[test]
    fn every_signature_in_every_layout_is_read() {
        let cases = [
            (Lanes::Alpha, 4, &b"stealth_pnginfo"[..], false),
            (Lanes::Alpha, 4, b"stealth_pngcomp", true),
            (Lanes::Alpha, 2, b"stealth_pngcomp", true),
            (Lanes::Rgb, 3, b"stealth_rgbinfo", false),
            (Lanes::Rgb, 4, b"stealth_rgbcomp", true),
        ];
        for (lanes, channels, signature, gzip) in cases {
            let image = hide(
                &stream(signature, A1111.as_bytes(), gzip),
                lanes,
                channels,
                40,
            );
            let (found, troubles) = read(&image);
            let found = found.unwrap_or_else(|| panic!("{signature:?} in {channels} channels"));
            assert!(troubles.is_empty());
            assert_eq!(found.provenance, Provenance::A1111Parameters);
            assert_eq!(found.prompt, "a red fox in snow");
            assert_eq!(found.negative_prompt.as_deref(), Some("blurry"));
            assert_eq!(found.parameters["seed"], 7);
            let name = String::from_utf8_lossy(signature);
            assert_eq!(
                found.location,
                format!("pixels ({} LSB, {name})", lanes.name())
            );
        }
    }

    #[test]
    fn novelai_json_of_text_chunks_is_read_with_its_comment() {
        let comment = serde_json::json!({"prompt": "1girl", "uc": "lowres", "steps": 28,
            "scale": 5.0, "seed": 9, "width": 832, "height": 1216});
        let chunks = serde_json::json!({"Description": "1girl, red kimono",
            "Software": "NovelAI", "Source": "NovelAI Diffusion V4.5 4BDE2A90",
            "Comment": comment.to_string()});
        let payload = chunks.to_string();
        let image = hide(
            &stream(b"stealth_pngcomp", payload.as_bytes(), true),
            Lanes::Alpha,
            4,
            64,
        );
        let (found, troubles) = read(&image);
        assert!(troubles.is_empty(), "{:?}", troubles[0].detail);
        let found = found.unwrap();
        assert_eq!(found.provenance, Provenance::NovelAi);
        assert_eq!(found.prompt, "1girl, red kimono");
        assert_eq!(found.negative_prompt.as_deref(), Some("lowres"));
        assert_eq!(found.parameters["cfg_scale"], 5.0);
        assert_eq!(found.parameters["size"], "832x1216");
        assert_eq!(found.parameters["model"], "NovelAI Diffusion V4.5 4BDE2A90");
    }

    #[test]
    fn images_without_a_signature_give_nothing_and_no_warning() {
        for channels in [2, 3, 4] {
            let image = hide(b"stealth_pnginf0", Lanes::Alpha, channels, 16);
            assert!(matches!(read(&image), (None, t) if t.is_empty()));
        }
        // Too small for a signature at all.
        let tiny = hide(b"", Lanes::Rgb, 4, 2);
        assert!(matches!(read(&tiny), (None, t) if t.is_empty()));
        // 16-bit images are not what the writers produce: left alone.
        let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::new(64, 64);
        assert!(read(&DynamicImage::ImageRgb16(deep)).0.is_none());
    }

    /// A stream whose 4 length bytes say `length_bits`, followed by `data`.
    fn announcing(signature: &[u8], length_bits: u32, data: &[u8]) -> Vec<u8> {
        let mut out = signature.to_vec();
        out.extend(length_bits.to_be_bytes());
        out.extend(data);
        out
    }

    fn warning_of(image: &DynamicImage) -> String {
        let (found, troubles) = read(image);
        assert!(found.is_none());
        assert_eq!(troubles.len(), 1, "one warning");
        assert!(
            troubles[0].location.starts_with("pixels ("),
            "{}",
            troubles[0].location
        );
        troubles[0].detail.clone()
    }

    #[test]
    fn hostile_payloads_are_warnings_within_the_limits() {
        let huge = hide(
            &announcing(b"stealth_pnginfo", u32::MAX, b""),
            Lanes::Alpha,
            4,
            16,
        );
        assert!(warning_of(&huge).contains("over the 1048576-byte limit"));
        let short = hide(
            &announcing(b"stealth_rgbinfo", 10_000, b"abc"),
            Lanes::Rgb,
            3,
            16,
        );
        assert!(warning_of(&short).contains("announced as 10000 bits"));
        let cut = hide(b"stealth_pnginfo\0\0", Lanes::Alpha, 4, 12);
        assert!(warning_of(&cut).contains("ends inside the payload length"));
        let not_gzip = hide(
            &stream(b"stealth_pngcomp", A1111.as_bytes(), false),
            Lanes::Alpha,
            4,
            40,
        );
        assert!(warning_of(&not_gzip).contains("bad gzip"));
        let bomb = gzipped(&vec![b'a'; MAX_TEXT_BYTES + 10]);
        let image = hide(
            &announcing(b"stealth_pngcomp", 8 * bomb.len() as u32, &bomb),
            Lanes::Alpha,
            4,
            128,
        );
        assert!(warning_of(&image).contains("decompresses to over"));
        let latin1 = hide(
            &stream(b"stealth_pnginfo", b"caf\xe9", false),
            Lanes::Alpha,
            4,
            16,
        );
        assert!(warning_of(&latin1).contains("not UTF-8"));
        let broken = hide(
            &stream(b"stealth_pnginfo", b"{\"Comment\": ", false),
            Lanes::Alpha,
            4,
            16,
        );
        assert!(warning_of(&broken).contains("not valid JSON"));
    }

    #[test]
    fn a_prompt_is_read_only_when_the_file_had_none_and_is_cut_to_the_limit() {
        let long = format!("{}\nSteps: 1, Seed: 2, Size: 8x8", "word ".repeat(5000));
        let image = hide(
            &stream(b"stealth_pngcomp", long.as_bytes(), true),
            Lanes::Alpha,
            4,
            64,
        );
        let mut read = Metadata::default();
        read.fill_from_pixels(std::path::Path::new("x.png"), &image);
        let found = read.prompt.clone().unwrap();
        assert!(found.prompt.len() <= MAX_PROMPT_BYTES);
        assert!(read.warnings[0]
            .to_string()
            .starts_with("x.png: pixels (alpha LSB"));
        let mut kept = Metadata {
            prompt: Some(EmbeddedPrompt::new(Provenance::Sidecar, "from the file")),
            warnings: Vec::new(),
        };
        kept.fill_from_pixels(std::path::Path::new("x.png"), &image);
        assert_eq!(kept.prompt.unwrap().prompt, "from the file");
    }

    /// Cases per property (`PROMPTDEX_FUZZ_CASES` for a longer run).
    fn config(default_cases: u32) -> ProptestConfig {
        let cases = std::env::var("PROMPTDEX_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases);
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Reads `image` as indexing does, within a time budget, and checks the prompt's size.
    fn read_bounded(image: &DynamicImage) {
        let start = std::time::Instant::now();
        let mut read = Metadata::default();
        read.fill_from_pixels(std::path::Path::new("fuzz.png"), image);
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
        if let Some(found) = read.prompt {
            assert!(found.prompt.len() <= MAX_PROMPT_BYTES);
        }
    }

    fn lanes() -> impl Strategy<Value = (Lanes, usize)> {
        prop_oneof![
            Just((Lanes::Alpha, 4)),
            Just((Lanes::Alpha, 2)),
            Just((Lanes::Rgb, 3)),
            Just((Lanes::Rgb, 4)),
        ]
    }

    fn signature() -> impl Strategy<Value = &'static [u8]> {
        prop_oneof![
            Just(&b"stealth_pnginfo"[..]),
            Just(&b"stealth_pngcomp"[..]),
            Just(&b"stealth_rgbinfo"[..]),
            Just(&b"stealth_rgbcomp"[..]),
        ]
    }

    proptest! {
        #![proptest_config(config(300))]

        /// Any 8-bit pixels, of any small size, are read without a panic.
        #[test]
        fn arbitrary_pixels_never_panic(
            (width, height, channels) in (0u32..48, 0u32..48, prop_oneof![Just(2usize), Just(3), Just(4)]),
            seed in any::<u64>(),
        ) {
            let len = (width * height) as usize * channels;
            let raw: Vec<u8> = (0..len).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 24) as u8).collect();
            let image: DynamicImage = match channels {
                2 => GrayAlphaImage::from_raw(width, height, raw).unwrap().into(),
                3 => RgbImage::from_raw(width, height, raw).unwrap().into(),
                _ => RgbaImage::from_raw(width, height, raw).unwrap().into(),
            };
            read_bounded(&image);
        }

        /// A real signature followed by any length and any bytes (plain, or gzip of any
        /// text) gives a prompt or a warning, never a panic, in bounded time and memory.
        #[test]
        fn any_payload_after_a_signature_is_read_or_refused(
            (lanes, channels) in lanes(),
            signature in signature(),
            length in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
            data in proptest::collection::vec(any::<u8>(), 0..600),
            gzip in any::<bool>(),
            side in 12u32..90,
        ) {
            let data = if gzip { gzipped(&data) } else { data };
            let length = length.unwrap_or(8 * data.len() as u32);
            let image = hide(&announcing(signature, length, &data), lanes, channels, side);
            read_bounded(&image);
        }
    }
}
