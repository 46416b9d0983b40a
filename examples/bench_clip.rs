//! promptdex side of `scripts/bench_clip.sh`: the CLIP image tower on a checkpoint folder.
//!
//! `cargo run --release --example bench_clip -- DIR [BATCH=8] [RUNS=3]`

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use promptdex::models::image::{ClipModel, ImageEncoder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().expect("usage: bench_clip DIR [BATCH] [RUNS]"));
    let batch: usize = args.get(1).map_or(Ok(8), |s| s.parse())?;
    let runs: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let model = ClipModel::load(&dir)?;
    let size = model.input_size();
    let x = Tensor::randn(0f32, 1f32, (batch, 3, size, size), &Device::Cpu)?;
    model.encode_images(&x)?; // warm-up
    let t = Instant::now();
    for _ in 0..runs {
        model.encode_images(&x)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let n = batch * runs;
    println!(
        "promptdex {}: {n} images in {secs:.2} s = {:.2} images/s (batch {batch})",
        dir.display(),
        n as f64 / secs
    );
    Ok(())
}
