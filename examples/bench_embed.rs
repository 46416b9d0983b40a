//! Embedding throughput of promptdex's MiniLM on the first N prompts of a corpus.
//!
//! `cargo run --release --example bench_embed -- PROMPTS.tsv.gz [N=20000] [--workers W] [--save out.npy]`
//! Prints `promptdex: N prompts in S s = R prompts/s (workers W)`, the same shape of line as
//! `../shared/bench/st_embed.py`, and can save the vectors for comparison.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use promptdex::ingest::first_prompts;
use promptdex::models::{self, registry::MINILM, text::EmbedConfig, MiniLm, TextEmbedder};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut corpus = None;
    let mut n = 20_000usize;
    let mut workers = 0usize;
    let mut save: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" => workers = args.next().expect("--workers N").parse()?,
            "--save" => save = Some(args.next().expect("--save FILE").into()),
            _ if corpus.is_none() => corpus = Some(PathBuf::from(arg)),
            _ => n = arg.parse()?,
        }
    }
    let corpus = corpus.expect("usage: bench_embed PROMPTS.tsv.gz [N] [--workers W] [--save F]");
    let prompts = first_prompts(&corpus, n)?;
    let dir = models::fetch_model(&models::models_root(), &MINILM, &mut |l| eprintln!("{l}"))?;
    let model = MiniLm::load(
        &dir,
        EmbedConfig {
            workers,
            ..EmbedConfig::default()
        },
    )?;
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    model.embed(&refs[..256.min(refs.len())])?; // warm-up, as st_embed.py does
    let start = Instant::now();
    let vectors = model.embed(&refs)?;
    let secs = start.elapsed().as_secs_f64();
    let threads = if workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        workers
    };
    println!(
        "promptdex: {} prompts in {secs:.2} s = {:.1} prompts/s (workers {threads})",
        prompts.len(),
        prompts.len() as f64 / secs
    );
    if let Some(path) = save {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        promptdex::npy::write_npy(&mut out, &vectors, model.dim())?;
        out.flush()?;
    }
    Ok(())
}
