//! The command line: clap types, turned into the library's configs, and the output formats.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use promptdex::build::{import_corpus, ImportConfig, ImportProgress, ImportReport};
use promptdex::models::{self, text::EmbedConfig, MiniLm, TextEmbedder, REGISTRY};
use promptdex::search::{search_prompts, PromptHit, SearchConfig, SearchMode};
use promptdex::store::{IndexReader, IndexWriter, Manifest};

/// promptdex: find the prompts behind Stable Diffusion images and texts.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Folder of model weights (default: $PROMPTDEX_MODELS, else ./models).
    #[arg(long, global = true, value_name = "DIR")]
    models: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch, verify and list model weights.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Embed prompts with all-MiniLM-L6-v2 (the Kaggle metric's vectors).
    Embed(EmbedArgs),
    /// Import prompt corpora (.txt, .csv, .tsv, optionally .gz) into an index.
    Import(ImportArgs),
    /// Search an index for prompts like a text.
    Search(SearchArgs),
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download and verify models (all when none is named).
    Fetch {
        /// Model names (see `models list`).
        names: Vec<String>,
    },
    /// Show which models are present and verified.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EmbedFormat {
    /// One `{"text":…,"embedding":[…]}` per line.
    Jsonl,
    /// A float32 NumPy array of shape (n, 384).
    Npy,
}

#[derive(Debug, Args)]
struct EmbedArgs {
    /// Prompts to embed (else read one per line from --input or stdin).
    texts: Vec<String>,
    /// File with one prompt per line (`-` = stdin).
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: EmbedFormat,
    /// Write here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Model workers (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Upper bound on batch size x padded length per forward pass.
    #[arg(long, default_value_t = EmbedConfig::default().batch_tokens)]
    batch_tokens: usize,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Corpus files.
    #[arg(required = true)]
    corpora: Vec<PathBuf>,
    /// Index directory.
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// New prompts embedded and committed together.
    #[arg(long, default_value_t = ImportConfig::default().chunk)]
    chunk: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Hybrid,
    Semantic,
    Bm25,
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// The text to find prompts for.
    text: String,
    /// Index directory.
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Ranking: BM25 + semantic fused, or either alone.
    #[arg(long, value_enum, default_value = "hybrid")]
    mode: Mode,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Largest `-k` accepted.
const MAX_K: usize = 1000;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let models_root = cli.models.unwrap_or_else(models::models_root);
    match cli.command {
        Command::Models(ModelsCommand::Fetch { names }) => fetch(&models_root, &names),
        Command::Models(ModelsCommand::List) => list(&models_root),
        Command::Embed(args) => embed(&models_root, args),
        Command::Import(args) => import(&models_root, args),
        Command::Search(args) => search(&models_root, args),
    }
}

fn fetch(root: &Path, names: &[String]) -> Result<()> {
    let specs = if names.is_empty() {
        REGISTRY.iter().collect::<Vec<_>>()
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
        println!("{}\t{}", spec.name, dir.display());
    }
    Ok(())
}

fn list(root: &Path) -> Result<()> {
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
        for problem in &status.problems {
            writeln!(out, "{:<20} {:<10} - {problem}", "", "")?;
        }
    }
    Ok(())
}

/// Loads MiniLM, fetching it first if it is not there yet.
fn load_minilm(root: &Path, config: EmbedConfig) -> Result<MiniLm> {
    let spec = &models::registry::MINILM;
    let dir = if models::model_status(root, spec).ready() {
        root.join(spec.name)
    } else {
        eprintln!("{} is not fetched yet: fetching it", spec.name);
        models::fetch_model(root, spec, &mut |line| eprintln!("{line}"))?
    };
    Ok(MiniLm::load(&dir, config)?)
}

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

fn embed(root: &Path, args: EmbedArgs) -> Result<()> {
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

/// A progress bar over the corpus bytes, with rate and ETA; silent when stderr is no terminal.
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new(label: &str) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(500));
        Self { bar }
    }
}

impl ImportProgress for Bar {
    fn advance(&self, consumed: u64, size: u64, report: &ImportReport) {
        self.bar.set_length(size.max(1));
        self.bar.set_position(consumed);
        let secs = self.bar.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} new, {} dup, {:.0} prompts/s",
            report.added,
            report.duplicates,
            report.added as f64 / secs
        ));
    }

    fn message(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

fn text_manifest(model: &MiniLm) -> Manifest {
    Manifest::new(model.name(), model.weights_sha256(), model.dim())
}

fn import(root: &Path, args: ImportArgs) -> Result<()> {
    if args.chunk == 0 {
        bail!("--chunk must be at least 1");
    }
    let model = load_minilm(root, EmbedConfig::default())?;
    let writer = IndexWriter::open(&args.index, &text_manifest(&model))?;
    let config = ImportConfig {
        chunk: args.chunk,
        ..ImportConfig::default()
    };
    for corpus in &args.corpora {
        let bar = Bar::new(&corpus.file_name().unwrap_or_default().to_string_lossy());
        let result = import_corpus(&writer, &model, corpus, &config, &bar);
        bar.bar.finish_and_clear();
        let report = result?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{}: {} rows, {} new, {} duplicates, {} skipped; {} records in {}; {:.1} s ({:.0} new prompts/s)",
                corpus.display(),
                report.rows,
                report.added,
                report.duplicates,
                report.rejected,
                report.total_records,
                args.index.display(),
                report.seconds,
                report.added as f64 / report.seconds.max(1e-9)
            );
        }
    }
    Ok(())
}

fn search(root: &Path, args: SearchArgs) -> Result<()> {
    if args.k == 0 || args.k > MAX_K {
        bail!("-k must be between 1 and {MAX_K}");
    }
    let reader = IndexReader::open(&args.index, None)?;
    let model = load_minilm(
        root,
        EmbedConfig {
            workers: 1,
            ..EmbedConfig::default()
        },
    )?;
    reader
        .manifest()
        .check_compatible(&args.index, &text_manifest(&model))?;
    let config = SearchConfig {
        k: args.k,
        mode: match args.mode {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Semantic => SearchMode::Semantic,
            Mode::Bm25 => SearchMode::Bm25,
        },
        ..SearchConfig::default()
    };
    let hits = search_prompts(&reader, &model, &args.text, &config)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &hits)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &hits)?;
    }
    Ok(())
}

fn print_table(out: &mut dyn Write, hits: &[PromptHit]) -> Result<()> {
    if hits.is_empty() {
        writeln!(out, "no matching prompts")?;
        return Ok(());
    }
    let rank = |r: Option<usize>| r.map_or("-".to_string(), |r| r.to_string());
    writeln!(
        out,
        "{:>3}  {:>7}  {:>4}  {:>4}  prompt",
        "#", "score", "bm25", "sem"
    )?;
    for (i, hit) in hits.iter().enumerate() {
        let mut prompt: String = hit.prompt.chars().take(110).collect();
        if prompt.len() < hit.prompt.len() {
            prompt.push('…');
        }
        writeln!(
            out,
            "{:>3}  {:>7.4}  {:>4}  {:>4}  {}",
            i + 1,
            hit.score,
            rank(hit.bm25_rank),
            rank(hit.semantic_rank),
            prompt
        )?;
    }
    Ok(())
}
