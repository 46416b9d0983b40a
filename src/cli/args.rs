//! The command line's flags: the clap types alone, whose doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use promptdex::generate::{GenerateConfig, NeighbourRamp};
use promptdex::indexer::{ImageIndexConfig, ImportConfig, Shard};
use promptdex::ingest::DecodeLimits;
use promptdex::models::text::EmbedConfig;
use promptdex::serve::ServeConfig;
use promptdex::store::Location;

/// promptdex: find the prompts behind Stable Diffusion images and texts.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Folder of model weights (default: $PROMPTDEX_MODELS, else ./models).
    #[arg(long, global = true, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Show what an index holds: records, prompts, images, models, size.
    Stats(StatsArgs),
}

/// `stats`'s flags.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The index: a directory, or milvus://HOST:PORT/NAME[?token=…&db=…].
    #[arg(long, default_value = "index", value_parser = LocationParser)]
    pub index: Location,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--index`: a Milvus URL, or a directory (whose name need not be UTF-8).
#[derive(Debug, Clone, Copy)]
pub struct LocationParser;

impl clap::builder::TypedValueParser for LocationParser {
    type Value = Location;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Location, clap::Error> {
        match value.to_str() {
            Some(text) => text.parse().map_err(|e: promptdex::Error| {
                clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
                    .with_cmd(cmd)
            }),
            None => Ok(Location::Dir(PathBuf::from(value))),
        }
    }
}

/// `serve`'s flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The generation flags.
    #[command(flatten)]
    pub flags: GenerationFlags,
    /// Address to listen on (port 0: any free port; the `listening on` line says which).
    #[arg(long, default_value_t = ServeConfig::default().addr)]
    pub addr: std::net::SocketAddr,
    /// Largest upload, in MiB.
    #[arg(long, default_value_t = ServeConfig::default().max_upload >> 20)]
    pub max_upload_mb: usize,
    /// Largest width or height of an uploaded image, in pixels.
    #[arg(long, default_value_t = ServeConfig::default().max_side)]
    pub max_side: u32,
    /// Model worker threads (0 = one per core).
    #[arg(long, default_value_t = ServeConfig::default().workers)]
    pub workers: usize,
    /// Requests that may wait for a worker; past that, 503 with Retry-After.
    #[arg(long, default_value_t = ServeConfig::default().queue)]
    pub queue: usize,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = ServeConfig::default().timeout.as_secs())]
    pub timeout: u64,
    /// Longest a client may take to send its request headers, in seconds.
    #[arg(long, default_value_t = ServeConfig::default().header_timeout.as_secs())]
    pub header_timeout: u64,
}

/// The flags `generate`, `eval` and `serve` share: the index, the ensemble and the models.
#[derive(Debug, Args)]
pub struct GenerationFlags {
    /// The index: a directory, or milvus://HOST:PORT/NAME[?token=…&db=…] (token also from
    /// $MILVUS_TOKEN).
    #[arg(long, default_value = "index", value_parser = LocationParser)]
    pub index: Location,
    /// How modifiers are picked: best-scoring (fast) or one per list (classic).
    #[arg(long, value_enum, default_value = "fast")]
    pub mode: ModifierModeArg,
    /// Ensemble weights, e.g. `caption=1,tags=0.5,neighbours=1,corpus=1,modifiers=0.25,prior=1`
    /// (unnamed kinds keep their defaults).
    #[arg(long, value_name = "KIND=W,...")]
    pub weights: Option<String>,
    /// Nearest images whose prompts are candidates.
    #[arg(long, default_value_t = GenerateConfig::default().neighbours)]
    pub neighbours: usize,
    /// Image similarity below which a neighbour's prompt gets no weight, and from which it gets
    /// its full weight, linear in between: two numbers in [-1, 1], FLOOR below FULL (default:
    /// the image encoder's, 0.3,0.5 for EfficientNet-Lite, 0.6,0.85 for CLIP).
    #[arg(
        long,
        value_name = "FLOOR,FULL",
        value_parser = parse_neighbour_ramp,
        allow_hyphen_values = true
    )]
    pub neighbour_ramp: Option<NeighbourRamp>,
    /// Nearest corpus prompts that are candidates.
    #[arg(long, default_value_t = GenerateConfig::default().corpus)]
    pub corpus: usize,
    /// Modifiers added to the prompt.
    #[arg(long, default_value_t = GenerateConfig::default().modifiers)]
    pub modifiers: usize,
    /// Do not use the ImageNet -> prompt-space bridge (ConSE) to find corpus prompts.
    #[arg(long)]
    pub no_bridge: bool,
    /// Load the index's image encoder from this folder (see `index --model-dir`).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Caption with this model too (blip-base, blip-large: fetched from the Hugging Face hub).
    #[arg(long, value_name = "NAME")]
    pub captioner: Vec<String>,
    /// Caption with the BLIP checkpoint in this folder (config.json, model.safetensors,
    /// tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub captioner_dir: Vec<PathBuf>,
}

/// `--mode` of generation.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModifierModeArg {
    Fast,
    Classic,
}

/// `generate`'s arguments.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The generation flags.
    #[command(flatten)]
    pub flags: GenerationFlags,
    /// Ignore prompts stored in the files (to test the rest).
    #[arg(long)]
    pub ignore_metadata: bool,
    /// Print JSON (one object per image, in a list) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `eval`'s arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// `image,prompt` CSV (image paths relative to the CSV).
    pub labels: PathBuf,
    /// The generation flags.
    #[command(flatten)]
    pub flags: GenerationFlags,
    /// Methods to score (comma-separated; default all): constant, caption, nearest_image,
    /// nearest_corpus, modifiers, ensemble, generated, oracle.
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Keep each image's own record and records with its exact prompt out of the candidates.
    #[arg(long)]
    pub leave_one_out: bool,
    /// Use prompts stored in the image files (off: they would score 1.0).
    #[arg(long)]
    pub use_metadata: bool,
    /// Also search the ensemble weights that maximise the mean score on this set.
    #[arg(long)]
    pub tune: bool,
    /// Write a Kaggle submission (`imgId_eId,val`, the ensemble vectors) here.
    #[arg(long, value_name = "FILE")]
    pub submission: Option<PathBuf>,
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `report`'s arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// What `promptdex eval --json` printed.
    #[arg(value_name = "EVAL.json")]
    pub eval: PathBuf,
    /// The index, for its prompt statistics (left out: no index section): a directory, or
    /// milvus://HOST:PORT/NAME[?token=…&db=…] (token also from MILVUS_TOKEN).
    #[arg(long, value_name = "INDEX", value_parser = LocationParser)]
    pub index: Option<Location>,
    /// Folder to write `index.html`, the plots and the thumbnails into.
    #[arg(long, value_name = "FOLDER", default_value = "report")]
    pub out: PathBuf,
}

/// `index`'s arguments.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Folder of images (walked recursively).
    pub folder: PathBuf,
    /// The index: a directory, or milvus://HOST:PORT/NAME[?token=…&db=…] (token also from
    /// $MILVUS_TOKEN).
    #[arg(long, default_value = "index", value_parser = LocationParser)]
    pub index: Location,
    /// Image encoder (see `models list`).
    #[arg(long, default_value = "efficientnet-lite0")]
    pub model: String,
    /// Load the image encoder from this folder as is (a local checkpoint laid out as
    /// `models fetch` leaves it) instead of the models directory.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Images decoded and embedded together.
    #[arg(long, default_value_t = ImageIndexConfig::default().batch)]
    pub batch: usize,
    /// Prompts for the images from an `image,prompt` CSV (paths relative to the CSV); they
    /// take precedence over prompts stored in the files.
    #[arg(long, value_name = "CSV")]
    pub prompts: Option<PathBuf>,
    /// Largest image file read, in MiB (larger files are reported and skipped).
    #[arg(long, default_value_t = DecodeLimits::default().max_file_bytes >> 20)]
    pub max_file_mb: u64,
    /// Largest width or height decoded, in pixels.
    #[arg(long, default_value_t = DecodeLimits::default().max_side)]
    pub max_side: u32,
    /// Largest allocation the decoder may make for one image, in MiB (a decompression bomb
    /// is refused before its pixels are allocated).
    #[arg(long, default_value_t = DecodeLimits::default().max_alloc >> 20)]
    pub max_decode_mb: u64,
    /// Take only the image files (by path) whose stable key falls in shard K of N (K from 1): N workers,
    /// anywhere, fill one index with no coordinator; rerunning a shard adds nothing twice.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download and verify models (all when none is named).
    Fetch {
        /// Model names (see `models list`).
        names: Vec<String>,
    },
    /// Show which models are present and verified.
    List,
}

/// `embed`'s output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EmbedFormat {
    /// One `{"text":…,"embedding":[…]}` per line.
    Jsonl,
    /// A float32 NumPy array of shape (n, 384).
    Npy,
}

/// `embed`'s arguments.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Prompts to embed (else read one per line from --input or stdin).
    pub texts: Vec<String>,
    /// File with one prompt per line (`-` = stdin).
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: EmbedFormat,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Model workers (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Upper bound on batch size x padded length per forward pass.
    #[arg(long, default_value_t = EmbedConfig::default().batch_tokens)]
    pub batch_tokens: usize,
}

/// `import`'s arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Corpus files.
    #[arg(required = true)]
    pub corpora: Vec<PathBuf>,
    /// The index: a directory, or milvus://HOST:PORT/NAME[?token=…&db=…] (token also from
    /// $MILVUS_TOKEN).
    #[arg(long, default_value = "index", value_parser = LocationParser)]
    pub index: Location,
    /// New prompts embedded and committed together.
    #[arg(long, default_value_t = ImportConfig::default().chunk)]
    pub chunk: usize,
    /// Take only the rows (by prompt) whose stable key falls in shard K of N (K from 1): N workers,
    /// anywhere, fill one index with no coordinator; rerunning a shard adds nothing twice.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--mode` of search.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    Hybrid,
    Semantic,
    Bm25,
}

/// `search`'s arguments.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The text to find prompts for.
    #[arg(required_unless_present = "image")]
    pub text: Option<String>,
    /// Find the indexed images nearest to this image instead.
    #[arg(long, conflicts_with = "text")]
    pub image: Option<PathBuf>,
    /// With --image: load the index's image encoder from this folder (see `index --model-dir`).
    #[arg(long, value_name = "DIR", requires = "image")]
    pub model_dir: Option<PathBuf>,
    /// The index: a directory, or milvus://HOST:PORT/NAME[?token=…&db=…] (token also from
    /// $MILVUS_TOKEN).
    #[arg(long, default_value = "index", value_parser = LocationParser)]
    pub index: Location,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Ranking: BM25 + semantic fused, or either alone.
    #[arg(long, value_enum, default_value = "hybrid")]
    pub mode: Mode,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--neighbour-ramp FLOOR,FULL`: two similarities in [-1, 1], the floor below the full.
fn parse_neighbour_ramp(spec: &str) -> Result<NeighbourRamp, String> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let [floor, full] = parts[..] else {
        return Err(format!("`{spec}` is not FLOOR,FULL (two numbers)"));
    };
    let similarity = |text: &str| {
        text.parse::<f32>()
            .ok()
            .filter(|v| (-1.0..=1.0).contains(v))
            .ok_or_else(|| format!("`{text}` is not a similarity in [-1, 1]"))
    };
    let ramp = NeighbourRamp {
        floor: similarity(floor)?,
        full: similarity(full)?,
    };
    if ramp.floor >= ramp.full {
        return Err(format!(
            "FLOOR {} must be below FULL {}",
            ramp.floor, ramp.full
        ));
    }
    Ok(ramp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn a_neighbour_ramp_is_two_ordered_similarities() {
        let ramp = parse_neighbour_ramp("0.6, 0.85").unwrap();
        assert_eq!((ramp.floor, ramp.full), (0.6, 0.85));
        assert_eq!(parse_neighbour_ramp("-1,1").unwrap().floor, -1.0);
        for bad in [
            "0.5",
            "0.1,0.2,0.3",
            "a,0.5",
            "0.2,1.5",
            "-2,0",
            "NaN,0.5",
            "0.5,0.5",
            "0.8,0.2",
            "",
        ] {
            assert!(parse_neighbour_ramp(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_neighbour_ramp_help_names_the_real_defaults() {
        let cli = Cli::command();
        let generate = cli.find_subcommand("generate").unwrap();
        let flag = generate
            .get_arguments()
            .find(|a| a.get_id() == "neighbour_ramp")
            .unwrap();
        let help = flag.get_help().unwrap().to_string();
        for ramp in [NeighbourRamp::CLASSIFIER, NeighbourRamp::TEXT_ALIGNED] {
            let pair = format!("{},{}", ramp.floor, ramp.full);
            assert!(help.contains(&pair), "help lacks {pair}: {help}");
        }
    }
}
