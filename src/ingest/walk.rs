//! Walking an image folder: which files to index, which to skip, and what went wrong where.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use walkdir::WalkDir;

/// Extensions indexed as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp"];

/// A candidate image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Its path (as found under the root; names need not be UTF-8).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch (0 when unknown).
    pub mtime_ns: u64,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Image files, in path order.
    pub images: Vec<ImageFile>,
    /// Regular files skipped because of their extension.
    pub skipped: usize,
    /// Paths that could not be walked (unreadable folders, symlink loops, ...), with why.
    pub errors: Vec<(PathBuf, String)>,
}

/// True when `path` has an image extension.
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Walks `root` recursively, following symbolic links (loops are reported, not followed).
pub fn walk_images(root: &Path) -> Walk {
    let mut walk = Walk::default();
    for entry in WalkDir::new(root).follow_links(true).sort_by_file_name() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                let why = if e.loop_ancestor().is_some() {
                    "symbolic link loop: not followed".to_string()
                } else {
                    e.io_error()
                        .map_or_else(|| e.to_string(), |io| io.to_string())
                };
                walk.errors.push((path, why));
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        if !is_image_path(entry.path()) {
            walk.skipped += 1;
            continue;
        }
        match entry.metadata() {
            Ok(meta) => walk.images.push(ImageFile {
                path: entry.path().to_path_buf(),
                size: meta.len(),
                mtime_ns: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64),
            }),
            Err(e) => walk
                .errors
                .push((entry.path().to_path_buf(), e.to_string())),
        }
    }
    walk
}
