//! What the stealth-metadata check costs next to what indexing already does per image: for
//! every image in FOLDER, the time to read the file's chunks, to decode its pixels, to look
//! for a stealth signature in them, and to convert them to RGB (as `promptdex index` does,
//! in that order), summed over the folder's images; the best of ROUNDS passes (default 5).
//!
//! `cargo run --release --example bench_stealth -- FOLDER [ROUNDS]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use promptdex::ingest::{decode_pixels, read_image_file, read_metadata_of, DecodeLimits};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let folder = PathBuf::from(args.next().expect("usage: bench_stealth FOLDER [ROUNDS]"));
    let rounds: usize = args.next().map_or(Ok(5), |r| r.parse())?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let limits = DecodeLimits::default();
    let files: Vec<(PathBuf, Vec<u8>)> = paths
        .into_iter()
        .filter_map(|p| read_image_file(&p, &limits).ok().map(|b| (p, b)))
        .collect();
    let mut best = [Duration::MAX; 4];
    let mut found = 0;
    for _ in 0..rounds {
        let mut times = [Duration::ZERO; 4];
        found = 0;
        for (path, bytes) in &files {
            let t = Instant::now();
            let mut read = read_metadata_of(path, bytes);
            times[0] += t.elapsed();
            let t = Instant::now();
            let Ok(pixels) = decode_pixels(path, bytes, &limits) else {
                continue; // not an image: indexing reports it
            };
            times[1] += t.elapsed();
            let t = Instant::now();
            read.fill_from_pixels(path, &pixels);
            times[2] += t.elapsed();
            let t = Instant::now();
            std::hint::black_box(pixels.into_rgb8());
            times[3] += t.elapsed();
            found += usize::from(read.prompt.is_some());
        }
        for (b, t) in best.iter_mut().zip(times) {
            *b = (*b).min(t);
        }
    }
    let names = ["chunks", "decode", "stealth check", "to RGB"];
    println!(
        "{} files, {found} with a prompt, best of {rounds}:",
        files.len()
    );
    for (name, t) in names.iter().zip(best) {
        let per = t.as_secs_f64() * 1e6 / files.len() as f64;
        println!(
            "  {name:>13}: {:9.3} ms in all, {per:9.2} µs per image",
            t.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
