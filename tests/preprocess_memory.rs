//! Peak heap of decoding and preprocessing one image, measured by a counting allocator (this
//! binary's global allocator): an extreme aspect ratio (8192 x 1, 1 x 8192, a PNG of about a
//! hundred bytes) must cost no more than an ordinary 512 x 512 image, for every encoder's
//! preprocessing. Resizing the shorter side first made 8192 x 1 a 1.8 M x 224 buffer (1.2 GB).
//!
//! One test function, so no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{ImageFormat, RgbImage};
use promptdex::ingest::{decode_image, DecodeLimits};
use promptdex::models::caption::blip;
use promptdex::models::image::{clip, preprocess};
use promptdex::Result;

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - before)
}

/// A picture of noise and edges (so the PNG of a large one is not tiny).
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 3;
        image::Rgb([v as u8, (v >> 8) as u8, ((x + y) % 256) as u8])
    })
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

type Step = (&'static str, fn(&RgbImage) -> Result<RgbImage>);

#[test]
fn extreme_aspect_ratios_cost_no_more_than_an_ordinary_image() {
    let steps: [Step; 3] = [
        ("EfficientNet-Lite0", |i| {
            preprocess::resize_center_crop(i, 224)
        }),
        ("CLIP", |i| clip::resize_center_crop(i, 224)),
        ("BLIP", |i| blip::resize_square(i, 384)),
    ];
    let config = DecodeLimits::default();
    let ordinary = picture(512, 512);
    let ordinary_png = png(&ordinary);
    let (_, decode_ordinary) = peak_of(|| decode_image(Path::new("o.png"), &ordinary_png, &config));
    for (w, h) in [(8192, 1), (1, 8192), (16_384, 1), (1, 16_384), (3, 12_000)] {
        let extreme = picture(w, h);
        let bytes = png(&extreme);
        let (decoded, cost) = peak_of(|| decode_image(Path::new("x.png"), &bytes, &config));
        assert_eq!(decoded.unwrap().dimensions(), (w, h));
        eprintln!(
            "decode {w}x{h} ({} bytes): {cost} bytes at peak; 512x512: {decode_ordinary}",
            bytes.len()
        );
        assert!(
            cost <= decode_ordinary,
            "decoding {w}x{h} peaked at {cost} bytes, 512x512 at {decode_ordinary}"
        );
        for (name, step) in steps {
            let (square, normal) = peak_of(|| step(&ordinary));
            let side = square.unwrap().width();
            let (out, cost) = peak_of(|| step(&extreme));
            assert_eq!(out.unwrap().dimensions(), (side, side), "{name} {w}x{h}");
            eprintln!("{name} {w}x{h}: {cost} bytes at peak; 512x512: {normal}");
            assert!(
                cost <= normal,
                "{name}: {w}x{h} peaked at {cost} bytes, 512x512 at {normal}"
            );
        }
    }
}
