//! Conversion of a legacy checkpoint (a `.pth` pickle) to safetensors after its source was
//! fetched and checked; the output is checked against its own registered sha256.

use std::fs;
use std::path::{Path, PathBuf};

use super::stamp::sha256_file;
use super::{finish, install_checked};
use crate::models::registry::{Conversion, ConversionKind, ModelFile, ModelSpec};
use crate::{Error, Result};

/// Makes the converted file from its verified source (if the spec has one and it is not
/// there yet), checks it and removes the source; then checks the whole model.
pub(super) fn convert_and_finish(
    root: &Path,
    spec: &'static ModelSpec,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    if let Some(conversion) = &spec.convert {
        let dir = root.join(spec.name);
        let output = spec
            .files
            .iter()
            .find(|f| f.name == conversion.output)
            .ok_or_else(|| {
                Error::model(
                    spec.name,
                    format!(
                        "conversion output {} is not a model file",
                        conversion.output
                    ),
                )
            })?;
        let dest = dir.join(output.name);
        if !(dest.is_file() && sha256_file(&dest).is_ok_and(|s| s == output.sha256)) {
            log(&format!(
                "{}: converting {} to {}",
                spec.name, conversion.source.name, output.name
            ));
            convert(&dir, conversion, output).map_err(|e| Error::model(spec.name, e))?;
        }
        let source = dir.join(conversion.source.name);
        if source.exists() {
            fs::remove_file(&source).map_err(|e| Error::io(source, e))?;
        }
    }
    finish(root, spec, log)
}

/// Runs one conversion in `dir`: source (checked again) -> `output.part` -> checked output.
fn convert(
    dir: &Path,
    conversion: &Conversion,
    output: &ModelFile,
) -> std::result::Result<(), String> {
    let source = dir.join(conversion.source.name);
    let sum = sha256_file(&source).map_err(|e| e.to_string())?;
    if sum != conversion.source.sha256 {
        return Err(format!(
            "{} has sha256 {sum}, expected {}",
            conversion.source.name, conversion.source.sha256
        ));
    }
    let tmp = dir.join(format!("{}.part", output.name));
    let made = match conversion.kind {
        ConversionKind::PthToSafetensors => crate::models::pth::pth_to_safetensors(&source, &tmp),
    };
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(format!("converting {}: {e}", conversion.source.name));
    }
    let what = format!("the conversion of {}", conversion.source.name);
    install_checked(&tmp, dir, output, &what).map_err(|e| e.to_string())
}
