//! The text commands: `import` (corpora into an index) and `search` for a text.

use std::path::Path;

use anyhow::{bail, Result};

use promptdex::indexer::{import_corpus, ImportConfig};
use promptdex::models::{text::EmbedConfig, MiniLm};
use promptdex::search::{search_prompts, SearchConfig, SearchMode, MAX_K};
use promptdex::store::{open_reader, open_writer, IndexWrite, Location};

use super::args::{ImportArgs, Mode, SearchArgs};
use super::models::{load_minilm, text_manifest};
use super::output::{emit, print_import_report, print_table, Bar};

/// `import`: adds the corpora to the index, one report line per corpus.
pub fn import(root: &Path, args: ImportArgs) -> Result<()> {
    if args.chunk == 0 {
        bail!("--chunk must be at least 1");
    }
    let model = load_minilm(root, EmbedConfig::default())?;
    let existed = args.index.dir().is_none_or(Path::exists);
    let mut tell = |line: &str| eprintln!("{line}");
    let waiting = args.shard.map(|_| &mut tell as &mut dyn FnMut(&str));
    let writer = open_writer(&args.index, &text_manifest(&model), waiting)?;
    let result = import_all(writer.as_ref(), &model, &args);
    // A first import that stored nothing leaves no index folder behind.
    if result.is_err() && !existed && writer.is_empty()? {
        drop(writer);
        if let Location::Dir(dir) = &args.index {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

/// Imports each corpus in turn under a progress bar, printing its report when it is done.
fn import_all(writer: &dyn IndexWrite, model: &MiniLm, args: &ImportArgs) -> Result<()> {
    let config = ImportConfig {
        chunk: args.chunk,
        shard: args.shard,
        ..ImportConfig::default()
    };
    let mut out = std::io::stdout().lock();
    for corpus in &args.corpora {
        let bar = Bar::new(&corpus.file_name().unwrap_or_default().to_string_lossy());
        let result = import_corpus(writer, model, corpus, &config, &bar);
        bar.bar.finish_and_clear();
        print_import_report(&mut out, args.json, corpus, &args.index, &result?)?;
    }
    Ok(())
}

/// Fails unless `-k` is between 1 and [`MAX_K`].
pub fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        bail!("-k must be between 1 and {MAX_K}");
    }
    Ok(())
}

/// `search TEXT`: the prompts of the index nearest to the text.
pub fn search(root: &Path, args: SearchArgs) -> Result<()> {
    check_k(args.k)?;
    let reader = open_reader(&args.index, None)?;
    let model = load_minilm(
        root,
        EmbedConfig {
            workers: 1,
            ..EmbedConfig::default()
        },
    )?;
    reader
        .manifest()
        .check_compatible(args.index.path(), &text_manifest(&model))?;
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
    let hits = search_prompts(reader.as_ref(), &model, text, &config)?;
    emit(args.json, &hits, |out| print_table(out, &hits))
}
