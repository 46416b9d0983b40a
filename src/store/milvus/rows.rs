//! Records to Milvus rows and back.

use serde_json::{json, Value};

use super::client::Row;
use super::schema::{HAS_TEXT, ID, KIND, PROMPT, RECORD, TEXT};
use crate::store::{Record, Stored};

/// A row of the records collection: `text` is the MiniLM vector of the record's prompt, or
/// `None` (stored as zeros of `dim`, with `has_text` false).
pub fn record_row(
    key: i64,
    record: &Record,
    text: Option<&[f32]>,
    dim: usize,
) -> crate::Result<Value> {
    let kind = match record {
        Record::Prompt(_) => "prompt",
        Record::Image(_) => "image",
    };
    let vector = match text {
        Some(v) => v.to_vec(),
        None => vec![0.0; dim],
    };
    Ok(json!({
        ID: key,
        KIND: kind,
        HAS_TEXT: text.is_some(),
        PROMPT: record.prompt().unwrap_or(""),
        TEXT: vector,
        RECORD: serde_json::to_value(record)?,
    }))
}

/// The primary key of a row.
pub fn key(row: &Row) -> Result<i64, String> {
    row.get(ID)
        .and_then(Value::as_i64)
        .ok_or_else(|| "a row without an id".to_string())
}

/// The vector in field `name` of a row.
pub fn vector(row: &Row, name: &str) -> Result<Vec<f32>, String> {
    let values = row
        .get(name)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("a row without its {name} vector"))?;
    values
        .iter()
        .map(|v| v.as_f64().map(|x| x as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| format!("a {name} vector that is not numbers"))
}

/// The record a records row holds.
pub fn record(row: &Row) -> Result<Record, String> {
    let value = row
        .get(RECORD)
        .cloned()
        .ok_or_else(|| "a row without its record".to_string())?;
    serde_json::from_value(value).map_err(|e| format!("a damaged record: {e}"))
}

/// The record a records row holds, as searches show it.
pub fn stored(row: &Row) -> Result<Stored, String> {
    let record = record(row)?;
    Ok(Stored {
        prompt: record.prompt().unwrap_or("").to_string(),
        metadata: record.metadata(),
    })
}

/// True when the row's `text` is a real prompt vector.
pub fn has_text(row: &Row) -> bool {
    row.get(HAS_TEXT).and_then(Value::as_bool).unwrap_or(false)
}

/// The prompt of a records row (empty when it has none).
pub fn prompt(row: &Row) -> &str {
    row.get(PROMPT).and_then(Value::as_str).unwrap_or("")
}
