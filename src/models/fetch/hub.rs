//! The Hugging Face hub: the `hf-hub` client, plain downloads of files with registered
//! checksums, and the pinned fetch (the repository listing, what it [`Declared`] per file,
//! [`git_blob_sha1`], [`check_declared`]) for models whose checksums only the hub declares.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha1::Digest;

use super::stamp::{read_chunks, read_stamp, sha256_file, stamp_entry, write_stamp, HubPin, Stamp};
use super::{finish, install_checked, HF_ENDPOINT_ENV, OFFLINE_ENV};
use crate::models::registry::{Checksum, ModelFile, ModelSpec};
use crate::{Error, Result};

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

/// Downloads `files` from the hub's `main` into `dir`, each checked against its registered
/// sha256 before it is renamed into place.
pub(super) fn fetch_from_hub(
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

/// Whether `s` is `len` hexadecimal digits.
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
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    read_chunks(file, path, |chunk| hasher.update(chunk))?;
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
pub(super) fn fetch_pinned(
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

/// The pinned fetch itself: the listing at the current commit, then each file downloaded (or
/// the one already here checked) against its declaration and recorded in the stamp.
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
}
