//! The shared generation flags lowered into the library's `GenerateConfig` and `LoadOptions`,
//! and the generator they open.

use std::path::Path;

use anyhow::{bail, Context, Result};

use promptdex::generate::{
    open_generator, GenerateConfig, Generator, LoadOptions, ModifierMode, Weights,
};

use super::args::{GenerationFlags, ModifierModeArg};

/// The generation settings the flags describe.
pub fn generate_config(flags: &GenerationFlags) -> Result<GenerateConfig> {
    let mut config = GenerateConfig {
        neighbours: flags.neighbours,
        corpus: flags.corpus,
        modifiers: flags.modifiers,
        mode: match flags.mode {
            ModifierModeArg::Fast => ModifierMode::Fast,
            ModifierModeArg::Classic => ModifierMode::Classic,
        },
        bridge: !flags.no_bridge,
        neighbour_ramp: flags.neighbour_ramp,
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
pub fn load_options(flags: &GenerationFlags) -> LoadOptions {
    LoadOptions {
        image_model_dir: flags.model_dir.clone(),
        captioners: flags.captioner.clone(),
        captioner_dirs: flags.captioner_dir.clone(),
        ..LoadOptions::default()
    }
}

/// Opens the generator over the flags' index with the models they name, saying on stderr
/// what it loads.
pub fn open(root: &Path, flags: &GenerationFlags, config: GenerateConfig) -> Result<Generator> {
    Ok(open_generator(
        root,
        &flags.index,
        &load_options(flags),
        config,
        &mut |l| eprintln!("{l}"),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_override_only_the_kinds_named() {
        let w = parse_weights("caption=2, prior=0.5,").unwrap();
        let default = Weights::default();
        assert_eq!((w.caption, w.prior), (2.0, 0.5));
        assert_eq!((w.tags, w.corpus), (default.tags, default.corpus));
        for bad in ["caption", "caption=-1", "caption=inf", "colour=1"] {
            let err = parse_weights(bad).unwrap_err().to_string();
            assert!(err.starts_with("--weights: "), "{bad}: {err}");
        }
    }
}
