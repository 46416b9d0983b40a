//! The generation commands: `generate` (the prompt of images), `eval` (scoring it on a labelled
//! set) and `report` (the HTML report of an evaluation).

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use promptdex::eval::{
    evaluate, tune::tune_weights, write_submission, EvalConfig, EvalReport, Method,
};
use promptdex::generate::{Exclude, Generated};
use promptdex::ingest::read_labels;

use super::args::{EvalArgs, GenerateArgs, ReportArgs};
use super::generation::{generate_config, open};
use super::output::{emit, print_eval, print_generated, print_tuned, Bar};

/// `generate IMAGE…`: the prompt of each image, as text or as a JSON list; fails only when
/// no image could be processed.
pub fn generate(root: &Path, args: GenerateArgs) -> Result<()> {
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

/// The methods `--methods` names (all when it names none).
fn parse_methods(names: &[String]) -> Result<Vec<Method>> {
    if names.is_empty() {
        return Ok(Method::ALL.to_vec());
    }
    names
        .iter()
        .map(|m| {
            Method::parse(m.trim()).with_context(|| {
                let known: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown method {m}; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// `eval LABELS.csv`: scores the methods on the labelled images, optionally tunes the weights
/// and writes a Kaggle submission, and prints the report.
pub fn eval(root: &Path, args: EvalArgs) -> Result<()> {
    let methods = parse_methods(&args.methods)?;
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
        write_submission_file(path, &report)?;
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
    if let Some((weights, mean)) = tuned {
        print_tuned(&mut out, &weights, mean)?;
    }
    Ok(())
}

/// Writes the Kaggle submission of the report's ensemble vectors (one per image that has
/// one, named by the image's file stem) to `path`.
fn write_submission_file(path: &Path, report: &EvalReport) -> Result<()> {
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
    write_submission(BufWriter::new(file), &rows).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// `report EVAL.json`: writes the HTML report and says what it wrote.
pub fn report(args: ReportArgs) -> Result<()> {
    let eval = promptdex::report::read_eval(&args.eval)?;
    let written =
        promptdex::report::write_report(&eval, &args.eval, args.index.as_ref(), &args.out)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_default_to_all_and_unknown_ones_are_named() {
        assert_eq!(parse_methods(&[]).unwrap(), Method::ALL.to_vec());
        let err = parse_methods(&["caption".into(), "bogus".into()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown method bogus; known: "), "{err}");
    }
}
