//! Labelled image sets: a CSV whose first two columns are `image,prompt` (image paths relative
//! to the CSV's folder), the format of the shared eval sets and of Kaggle's training data.

use std::path::{Path, PathBuf};

use super::corpus::RecordGuard;
use super::limits::MAX_PROMPT_BYTES;
use crate::{Error, Result};

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The image file, resolved against the CSV's folder.
    pub image: PathBuf,
    /// Its true prompt.
    pub prompt: String,
}

/// Reads an `image,prompt` CSV (a header row naming `image` and `prompt`; other columns are
/// ignored). A row without an image or prompt, or with a prompt over [`MAX_PROMPT_BYTES`], is
/// an error naming its line.
pub fn read_labels(csv_path: &Path) -> Result<Vec<Labelled>> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let file = std::fs::File::open(csv_path)
        .map_err(|e| Error::input(csv_path, format!("cannot read: {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(RecordGuard::new(std::io::BufReader::new(file), true));
    let headers = reader
        .headers()
        .map_err(|e| Error::input(csv_path, format!("no header row: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::input(
                    csv_path,
                    format!("no `{name}` column (expected image,prompt)"),
                )
            })
    };
    let (image_col, prompt_col) = (column("image")?, column("prompt")?);
    let mut labels = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| Error::input(csv_path, format!("line {line}: {e}")))?;
        let (Some(image), Some(prompt)) = (record.get(image_col), record.get(prompt_col)) else {
            return Err(Error::input(
                csv_path,
                format!("line {line}: missing image or prompt"),
            ));
        };
        if image.trim().is_empty() || prompt.trim().is_empty() {
            return Err(Error::input(
                csv_path,
                format!("line {line}: empty image or prompt"),
            ));
        }
        if prompt.trim().len() > MAX_PROMPT_BYTES {
            return Err(Error::input(
                csv_path,
                format!(
                    "line {line}: prompt of {} bytes, over the {MAX_PROMPT_BYTES}-byte limit",
                    prompt.trim().len()
                ),
            ));
        }
        labels.push(Labelled {
            image: base.join(image.trim()),
            prompt: prompt.trim().to_string(),
        });
    }
    if labels.is_empty() {
        return Err(Error::input(csv_path, "no labelled images"));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("prompts.csv");
        std::fs::write(&csv, "image,prompt,seed\nimages/a.png,\"a cat, red\",1\n").unwrap();
        let labels = read_labels(&csv).unwrap();
        assert_eq!(labels[0].image, dir.path().join("images/a.png"));
        assert_eq!(labels[0].prompt, "a cat, red");
        std::fs::write(&csv, "file,text\na.png,x\n").unwrap();
        let err = read_labels(&csv).unwrap_err().to_string();
        assert!(
            err.contains("prompts.csv") && err.contains("image"),
            "{err}"
        );
        std::fs::write(&csv, "image,prompt\na.png,\n").unwrap();
        assert!(read_labels(&csv)
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        let long = "a".repeat(MAX_PROMPT_BYTES + 1);
        std::fs::write(&csv, format!("image,prompt\na.png,ok\nb.png,{long}\n")).unwrap();
        let err = read_labels(&csv).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("limit"), "{err}");
    }
}
