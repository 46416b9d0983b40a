//! The writer lock: one process writes an index at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use fs2::FileExt;

use crate::{Error, Result};

/// An exclusive advisory lock on `DIR/writer.lock`, released when dropped (or when the
/// process dies, so a killed writer never leaves the index locked).
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock or fails at once, naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::take(dir, None)
    }

    /// Takes the lock, waiting for the process that holds it to finish (after telling
    /// `waiting` who that is).
    pub fn acquire_waiting(dir: &Path, waiting: &mut dyn FnMut(&str)) -> Result<Self> {
        Self::take(dir, Some(waiting))
    }

    fn take(dir: &Path, waiting: Option<&mut dyn FnMut(&str)>) -> Result<Self> {
        let path = dir.join("writer.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if file.try_lock_exclusive().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            match waiting {
                None => {
                    return Err(Error::index(
                        dir,
                        format!("{who} is writing to this index; wait for it to finish"),
                    ))
                }
                Some(tell) => {
                    tell(&format!(
                        "{}: {who} is writing to this index; waiting for it",
                        dir.display()
                    ));
                    file.lock_exclusive().map_err(|e| Error::io(&path, e))?;
                }
            }
        }
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            write!(f, "{}", std::process::id())?;
            f.flush()
        };
        write_pid(&mut file).map_err(|e| Error::io(&path, e))?;
        Ok(Self { _file: file })
    }
}
