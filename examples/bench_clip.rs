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
    let rate = n as f64 / secs;
    let gflop = tower_gflop(&dir)?;
    println!(
        "promptdex {}: {n} images in {secs:.2} s = {rate:.2} images/s (batch {batch}); \
         {gflop:.2} GFLOP per image, {:.0} GFLOP/s",
        dir.display(),
        rate * gflop
    );
    Ok(())
}

/// Nominal work of one image through the vision tower (patch product, every layer's matrix
/// products and attention, the projection), from the checkpoint's `config.json`: the figure to
/// hold against `examples/cpu_peak`. Element-wise work (norms, softmax, GELU) is left out.
fn tower_gflop(dir: &std::path::Path) -> anyhow::Result<f64> {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let v = &config["vision_config"];
    let get = |key: &str| {
        v[key]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("config.json: vision_config.{key} missing"))
    };
    let (width, inner, layers) = (
        get("hidden_size")?,
        get("intermediate_size")?,
        get("num_hidden_layers")?,
    );
    let (patch, side) = (get("patch_size")?, get("image_size")?);
    let projection = config["projection_dim"].as_f64().unwrap_or(0.0);
    let patches = (side / patch).floor().powi(2);
    let tokens = patches + 1.0;
    let per_layer =
        tokens * (4.0 * width * width + 2.0 * width * inner) + 2.0 * tokens * tokens * width;
    let macs = patches * 3.0 * patch * patch * width + layers * per_layer + width * projection;
    Ok(2.0 * macs / 1e9)
}
