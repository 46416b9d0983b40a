//! The image commands: `index` (a folder of images into an index) and `search --image`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use promptdex::indexer::{index_images, ImageIndexConfig};
use promptdex::ingest::{load_image, read_labels, DecodeLimits};
use promptdex::models::text::EmbedConfig;
use promptdex::search::{search_by_image, SearchConfig};
use promptdex::store::{open_reader, open_writer};

use super::args::{IndexArgs, SearchArgs};
use super::models::{load_image_encoder, load_minilm, text_manifest};
use super::output::{emit, print_image_table, print_index_report, Bar};
use super::text::check_k;

/// `index FOLDER`: embeds the folder's new and changed images into the index and prints the
/// report.
pub fn index_folder(root: &Path, args: IndexArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let text = load_minilm(root, EmbedConfig::default())?;
    let (encoder, model) = load_image_encoder(root, &args.model, args.model_dir.as_deref())?;
    let mut tell = |line: &str| eprintln!("{line}");
    let waiting = args.shard.map(|_| &mut tell as &mut dyn FnMut(&str));
    let mut writer = open_writer(&args.index, &text_manifest(&text), waiting)?;
    let (labels, missing) = read_prompt_labels(args.prompts.as_deref())?;
    let config = ImageIndexConfig {
        batch: args.batch,
        labels,
        decode: decode_limits(&args)?,
        shard: args.shard,
    };
    let bar = Bar::with_template(
        "images",
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
    );
    let result = index_images(
        writer.as_mut(),
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
    print_index_report(&mut std::io::stdout().lock(), &args, &report)
}

/// The prompts `--prompts CSV` gives, by canonical image path, and the rows whose image file
/// does not exist (they match no file; the report lists them).
fn read_prompt_labels(csv: Option<&Path>) -> Result<(HashMap<PathBuf, String>, Vec<String>)> {
    let mut labels = HashMap::new();
    let mut missing = Vec::new();
    if let Some(csv) = csv {
        for label in read_labels(csv)? {
            match std::fs::canonicalize(&label.image) {
                Ok(path) => {
                    labels.insert(path, label.prompt);
                }
                Err(_) => missing.push(label.image.display().to_string()),
            }
        }
    }
    Ok((labels, missing))
}

/// The decode limits `--max-file-mb`, `--max-side` and `--max-decode-mb` set.
fn decode_limits(args: &IndexArgs) -> Result<DecodeLimits> {
    if args.max_file_mb == 0 || args.max_side == 0 || args.max_decode_mb == 0 {
        bail!("--max-file-mb, --max-side and --max-decode-mb must be at least 1");
    }
    Ok(DecodeLimits {
        max_file_bytes: args.max_file_mb << 20,
        max_side: args.max_side,
        max_alloc: args.max_decode_mb << 20,
        ..DecodeLimits::default()
    })
}

/// `search --image FILE`: the indexed images nearest to the image (and, with a CLIP index,
/// the prompts nearest to it).
pub fn search_image(root: &Path, args: SearchArgs) -> Result<()> {
    check_k(args.k)?;
    let path = args.image.as_deref().expect("checked by the caller");
    let reader = open_reader(&args.index, None)?;
    let Some(model) = &reader.manifest().image_model else {
        bail!(
            "index {} holds no images; add some with `promptdex index FOLDER --index {}`",
            args.index,
            args.index
        );
    };
    let (encoder, identity) = load_image_encoder(root, &model.name, args.model_dir.as_deref())?;
    if identity != *model {
        bail!(
            "index {} was built with {} weights {}, the encoder loaded has {}",
            args.index,
            model.name,
            model.sha256,
            identity.sha256
        );
    }
    let image = load_image(path, &DecodeLimits::default())?;
    let found = search_by_image(
        reader.as_ref(),
        encoder.as_ref(),
        &image,
        args.k,
        SearchConfig::default().ef,
    )?;
    emit(args.json, &found, |out| print_image_table(out, &found))
}
