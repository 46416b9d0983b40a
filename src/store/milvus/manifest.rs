//! The manifest and the mean prompt vector, kept in the server (`NAME_manifest`).
//!
//! Row 0 holds the [`Manifest`] as JSON: checked on every open exactly as the embedded index
//! checks `manifest.json` ([`Manifest::check_compatible`], [`Manifest::check_image_model`]), so
//! a collection built with another model is refused by name.
//!
//! The mean prompt vector ([`crate::store::IndexRead::mean_prompt`]) is the normalised sum of
//! every prompt vector added. Milvus has no server-side aggregate over vectors and several
//! writers may run at once, so each writer keeps its own running sum in a row of its own (a
//! random key), rewritten after each batch: no two writers ever update the same row. A
//! reader adds the rows up once, when it opens. Prompts that two writers race to add (the same
//! shard given twice) count twice, and withdrawn images are not subtracted: the mean is a
//! prior, not an exact figure.

use serde_json::{json, Value};

use super::client::Milvus;
use super::schema::{Names, COUNT, DOC, ID, SUM};
use crate::store::Manifest;
use crate::Result;

/// Key of the manifest's row.
const MANIFEST_ROW: i64 = 0;

/// The manifest stored in the server, if the index has one.
pub fn read(m: &Milvus, names: &Names) -> Result<Option<Manifest>> {
    if !m.has_collection(&names.manifest)? {
        return Ok(None);
    }
    let rows = m.query(
        &names.manifest,
        &format!("{ID} == {MANIFEST_ROW}"),
        &[DOC],
        Some(1),
    )?;
    let Some(doc) = rows.into_iter().next().and_then(|mut r| r.remove(DOC)) else {
        return Ok(None);
    };
    serde_json::from_value(doc)
        .map(Some)
        .map_err(|e| m.fail(format!("its manifest ({}) is damaged: {e}", names.manifest)))
}

/// Stores `manifest` as the index's manifest.
pub fn write(m: &Milvus, names: &Names, manifest: &Manifest) -> Result<()> {
    let row = json!({
        ID: MANIFEST_ROW,
        DOC: serde_json::to_value(manifest)?,
        COUNT: 0,
        SUM: vec![0.0f32; manifest.dim],
    });
    m.upsert(&names.manifest, vec![row])
}

/// The normalised mean of every prompt vector the writers have summed, if any.
pub fn mean(m: &Milvus, names: &Names) -> Result<Option<Vec<f32>>> {
    let rows = m.query(
        &names.manifest,
        &format!("{ID} != {MANIFEST_ROW}"),
        &[COUNT, SUM],
        None,
    )?;
    let mut total: Option<Vec<f64>> = None;
    for row in rows {
        if row.get(COUNT).and_then(Value::as_i64).unwrap_or(0) <= 0 {
            continue;
        }
        let sum = super::rows::vector(&row, SUM).map_err(|e| m.fail(e))?;
        let total = total.get_or_insert_with(|| vec![0.0; sum.len()]);
        if total.len() != sum.len() {
            return Err(m.fail(format!("{}: prompt sums of two dimensions", names.manifest)));
        }
        for (t, s) in total.iter_mut().zip(sum) {
            *t += f64::from(s);
        }
    }
    Ok(total.and_then(|t| {
        let norm = t.iter().map(|x| x * x).sum::<f64>().sqrt();
        (norm > 0.0).then(|| t.iter().map(|x| (x / norm) as f32).collect())
    }))
}

/// One writer's running sum of the prompt vectors it added.
pub struct PromptSum {
    key: i64,
    count: i64,
    sum: Vec<f64>,
}

impl PromptSum {
    /// An empty sum under a fresh random key (never the manifest's).
    pub fn new(dim: usize) -> Self {
        let key = loop {
            let key: i64 = rand::random();
            if key != MANIFEST_ROW {
                break key;
            }
        };
        Self {
            key,
            count: 0,
            sum: vec![0.0; dim],
        }
    }

    /// Adds `vector` to the sum.
    pub fn add(&mut self, vector: &[f32]) {
        for (s, v) in self.sum.iter_mut().zip(vector) {
            *s += f64::from(*v);
        }
        self.count += 1;
    }

    /// Writes the sum to its row (nothing when nothing was added).
    pub fn save(&self, m: &Milvus, names: &Names) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let sum: Vec<f32> = self.sum.iter().map(|s| *s as f32).collect();
        let row = json!({
            ID: self.key,
            DOC: json!({"writer_sum": true}),
            COUNT: self.count,
            SUM: sum,
        });
        m.upsert(&names.manifest, vec![row])
    }
}
