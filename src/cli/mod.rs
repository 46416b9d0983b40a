//! The command line: the flags (`args`), each command family turning them into the library's
//! configs (`models`, `text`, `images`, `generate`, `serve`, `stats`), and the output formats
//! (`output`).

mod args;
mod generate;
mod generation;
mod images;
mod models;
mod output;
mod serve;
mod stats;
mod text;

use std::path::Path;

use anyhow::{bail, Result};
use promptdex::store::Location;

pub use args::Cli;
use args::{Command, ModelsCommand};

impl Command {
    /// The index directory the command works on, if it takes one (not a Milvus index).
    fn index_dir(&self) -> Option<&Path> {
        match self {
            Command::Import(a) => a.index.dir(),
            Command::Index(a) => a.index.dir(),
            Command::Search(a) => a.index.dir(),
            Command::Generate(a) => a.flags.index.dir(),
            Command::Eval(a) => a.flags.index.dir(),
            Command::Serve(a) => a.flags.index.dir(),
            Command::Stats(a) => a.index.dir(),
            Command::Report(a) => a.index.as_ref().and_then(Location::dir),
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
    let models_root = cli.models.unwrap_or_else(promptdex::models::models_root);
    if let Some(dir) = cli.command.index_dir() {
        check_index_dir(dir)?;
    }
    match cli.command {
        Command::Models(ModelsCommand::Fetch { names }) => models::fetch(&models_root, &names),
        Command::Models(ModelsCommand::List) => models::list(&models_root),
        Command::Embed(args) => models::embed(&models_root, args),
        Command::Import(args) => text::import(&models_root, args),
        Command::Index(args) => images::index_folder(&models_root, args),
        Command::Search(args) if args.image.is_some() => images::search_image(&models_root, args),
        Command::Search(args) => text::search(&models_root, args),
        Command::Generate(args) => generate::generate(&models_root, args),
        Command::Eval(args) => generate::eval(&models_root, args),
        Command::Report(args) => generate::report(args),
        Command::Serve(args) => serve::serve(models_root, args),
        Command::Stats(args) => stats::stats(args),
    }
}
