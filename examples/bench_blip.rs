//! promptdex side of `scripts/bench_blip.sh`: BLIP captioning of images with a checkpoint folder,
//! greedy, exactly TOKENS new tokens per image (the end token is held back until then).
//!
//! `cargo run --release --example bench_blip -- DIR TOKENS IMAGE...`

use std::path::PathBuf;
use std::time::Instant;

use promptdex::ingest::{load_image, DecodeLimits};
use promptdex::models::caption::blip::preprocess;
use promptdex::models::caption::{Blip, BlipConfig, Captioner, Decoding};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_blip DIR TOKENS IMAGE...";
    let dir = PathBuf::from(args.first().expect(usage));
    let tokens: usize = args.get(1).expect(usage).parse()?;
    let images = args[2..]
        .iter()
        .map(|p| load_image(p.as_ref(), &DecodeLimits::default()))
        .collect::<promptdex::Result<Vec<_>>>()?;
    anyhow::ensure!(!images.is_empty(), "{usage}");
    let options = BlipConfig {
        decoding: Decoding::Greedy,
        max_tokens: tokens,
        min_tokens: tokens,
    };
    let model = Blip::load_with(&dir, options)?;
    model.caption(&images[..1])?; // warm-up
    let t = Instant::now();
    let captions = model.caption(&images)?;
    let secs = t.elapsed().as_secs_f64();
    let n = captions.len();
    let t = Instant::now();
    model.encode_images(&preprocess(&images, model.image_size())?)?;
    let vision = t.elapsed().as_secs_f64();
    println!(
        "promptdex {}: {n} images in {secs:.2} s = {:.3} images/s ({tokens} tokens each, \
         batch {n}); preprocess + vision alone {:.3} images/s",
        dir.display(),
        n as f64 / secs,
        n as f64 / vision
    );
    Ok(())
}
