//! [`MilvusReader`]: searches answered by the server, one request each.

use std::collections::HashMap;

use milvus::v2::prelude::{
    ConsistencyLevel, HybridSearchRequest, RRFRerank, SearchRequest, SearchVectors,
    SubSearchRequest,
};

use super::client::{Milvus, Row, PAGE};
use super::keys::{in_filter, to_id, to_key};
use super::manifest;
use super::rows::{self, stored};
use super::schema::{self, Names, HAS_TEXT, ID, KIND, PROMPT, RECORD, SPARSE, TEXT, VECTOR};
use crate::ingest::dedup_key;
use crate::store::{
    dot, Fused, IndexRead, IndexWatermark, Location, Manifest, MilvusUrl, Near, Space, Stats,
    Stored, TextHit,
};
use crate::Result;

/// Only records whose `text` is a real prompt vector.
const WITH_TEXT: &str = "has_text == true";

/// A Milvus index opened for searching. It never writes; what it finds is what the server
/// holds at the time of each call (the mean prompt vector and which spaces hold vectors are
/// read once, at open).
pub struct MilvusReader {
    m: Milvus,
    names: Names,
    manifest: Manifest,
    mean: Option<Vec<f32>>,
    /// Whether prompts, images and aligned prompts hold any vector.
    spaces: [bool; 3],
}

/// A hit of one search: key, engine score, the output fields.
type Hit = (i64, f32, Row);

impl MilvusReader {
    /// Opens the index `url` names; `expected` (when given) must match its models.
    pub fn open(url: &MilvusUrl, expected: Option<&Manifest>) -> Result<Box<dyn IndexRead>> {
        Ok(Box::new(Self::connect(url, expected)?))
    }

    fn connect(url: &MilvusUrl, expected: Option<&Manifest>) -> Result<Self> {
        let m = Milvus::connect(url, ConsistencyLevel::Strong)?;
        let names = Names::new(m.name());
        let manifest = manifest::read(&m, &names)?.ok_or_else(|| {
            m.fail(format!(
                "no index here ({} is missing); create one with `promptdex import`",
                names.manifest
            ))
        })?;
        if let Some(expected) = expected {
            manifest.check_compatible(m.path(), expected)?;
        }
        schema::load(&m, &names.records)?;
        let mut spaces = [
            !m.query(&names.records, WITH_TEXT, &[ID], Some(1))?
                .is_empty(),
            false,
            false,
        ];
        if let Some(model) = &manifest.image_model {
            spaces[1] = any_row(&m, &names.images)?;
            spaces[2] = model.text_aligned && any_row(&m, &names.aligned)?;
        }
        let mean = manifest::mean(&m, &names)?;
        Ok(Self {
            m,
            names,
            manifest,
            mean,
            spaces,
        })
    }

    fn collection(&self, space: Space) -> &str {
        match space {
            Space::Prompts => &self.names.records,
            Space::Images => &self.names.images,
            Space::Aligned => &self.names.aligned,
        }
    }

    /// One search of `field` in `collection` (`target`): up to `k` hits, best first.
    fn search(
        &self,
        (collection, field): (&str, &str),
        vectors: SearchVectors,
        filter: &str,
        k: usize,
        ef: Option<usize>,
        fields: &[&str],
    ) -> Result<Vec<Hit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut request = SearchRequest::builder()
            .collection_name(collection)
            .vector_field(field)
            .vectors(vectors)
            .filter(filter)
            .limit(k as i64)
            .output_fields(fields.iter().copied())
            .consistency_level(self.m.consistency());
        if let Some(ef) = ef {
            request = request.extra_params(ef_param(ef.max(k)));
        }
        let request = request.build().map_err(|e| self.m.fail(e.to_string()))?;
        let what = format!("searching {collection}.{field}");
        self.m.block(&what, async {
            let response = self.m.client().search(request).await?;
            first_hits(response.results().iter().next())
        })
    }
}

/// Search parameters with breadth `ef`.
fn ef_param(ef: usize) -> HashMap<String, String> {
    HashMap::from([("ef".to_string(), ef.to_string())])
}

/// The hits of the first (only) query vector.
fn first_hits(
    result: Option<&milvus::v2::prelude::SingleResult>,
) -> milvus::v2::error::Result<Vec<Hit>> {
    let Some(result) = result else {
        return Ok(Vec::new());
    };
    let keys = match result.get_ids() {
        milvus::v2::prelude::Ids::Int64(keys) => keys.clone(),
        _ => Vec::new(),
    };
    let rows = result
        .rows()?
        .map(|row| row.to_entity_row())
        .collect::<milvus::v2::error::Result<Vec<Row>>>()?;
    Ok(keys
        .into_iter()
        .zip(result.get_scores().iter().copied())
        .zip(rows)
        .map(|((key, score), row)| (key, score, row))
        .collect())
}

/// True when `collection` exists and holds a row.
fn any_row(m: &Milvus, collection: &str) -> Result<bool> {
    if !m.has_collection(collection)? {
        return Ok(false);
    }
    schema::load(m, collection)?;
    Ok(!m.query(collection, "", &[ID], Some(1))?.is_empty())
}

impl IndexRead for MilvusReader {
    fn location(&self) -> &Location {
        self.m.location()
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Counts by kind (`count(*)` queries).
    fn stats(&self) -> Result<Stats> {
        let records = &self.names.records;
        let aligned = match self.spaces[2] {
            true => self.m.count(&self.names.aligned, "")?,
            false => 0,
        };
        Ok(Stats {
            location: self.m.location().to_string(),
            backend: "milvus".into(),
            records: self.m.count(records, "")?,
            prompts: self.m.count(records, WITH_TEXT)?,
            images: self.m.count(records, &format!("{KIND} == \"image\""))?,
            aligned,
            text_model: self.manifest.text_model.clone(),
            image_model: self.manifest.image_model.as_ref().map(|m| m.name.clone()),
            bytes: None,
            generation: None,
        })
    }

    /// BM25 through the server's analyzer and sparse index. milvus-lite reports BM25
    /// distances negated (real Milvus: positive); the order is the same, so scores are
    /// returned as their magnitude. Records whose prompt is the query come first.
    fn bm25(&self, query: &str, k: usize) -> Result<Vec<TextHit>> {
        let vectors = SearchVectors::EmbeddedText(vec![query.into()]);
        let hits = self.search(
            (&self.names.records, SPARSE),
            vectors,
            "",
            k,
            None,
            &[PROMPT],
        )?;
        let key = dedup_key(query);
        let (mut exact, rest): (Vec<TextHit>, Vec<TextHit>) = hits
            .iter()
            .map(|(id, score, row)| TextHit {
                id: to_id(*id),
                score: score.abs(),
                exact: dedup_key(rows::prompt(row)) == key,
            })
            .partition(|hit| hit.exact);
        exact.extend(rest);
        Ok(exact)
    }

    fn nearest(&self, space: Space, query: &[f32], k: usize, ef: usize) -> Result<Vec<Near>> {
        if !self.has_vectors(space) {
            return Ok(Vec::new());
        }
        let vectors = SearchVectors::Float(vec![query.to_vec()]);
        if space == Space::Prompts {
            let hits = self.search(
                (&self.names.records, TEXT),
                vectors,
                WITH_TEXT,
                k,
                Some(ef),
                &[RECORD],
            )?;
            return hits
                .into_iter()
                .map(|(key, similarity, row)| {
                    Ok(Near {
                        id: to_id(key),
                        similarity,
                        record: stored(&row).map_err(|e| self.m.fail(e))?,
                    })
                })
                .collect();
        }
        let target = (self.collection(space), VECTOR);
        let hits = self.search(target, vectors, "", k, Some(ef), &[ID])?;
        let ids: Vec<u64> = hits.iter().map(|(key, _, _)| to_id(*key)).collect();
        let records = self.records(&ids)?;
        Ok(hits
            .into_iter()
            .zip(records)
            .filter_map(|((key, similarity, _), record)| {
                record.map(|record| Near {
                    id: to_id(key),
                    similarity,
                    record,
                })
            })
            .collect())
    }

    fn has_engine_hybrid(&self) -> bool {
        true
    }

    /// One `hybrid_search` request: BM25 over the sparse field and the MiniLM field, `depth`
    /// each, fused by the server's RRF ranker with k = [`crate::search::RRF_K`]. The hits'
    /// stored vectors come back with them, so the cosine similarity is reported too.
    fn engine_hybrid(
        &self,
        query: &str,
        vector: &[f32],
        depth: usize,
        ef: usize,
    ) -> Result<Vec<Fused>> {
        if depth == 0 {
            return Ok(Vec::new());
        }
        let fail = |e: milvus::v2::error::Error| self.m.fail(e.to_string());
        let sparse = SubSearchRequest::builder()
            .vector_field(SPARSE)
            .vectors(SearchVectors::EmbeddedText(vec![query.into()]))
            .limit(depth as i64)
            .build()
            .map_err(fail)?;
        let dense = SubSearchRequest::builder()
            .vector_field(TEXT)
            .vectors(SearchVectors::Float(vec![vector.to_vec()]))
            .filter(WITH_TEXT)
            .limit(depth as i64)
            .extra_params(ef_param(ef.max(depth)))
            .build()
            .map_err(fail)?;
        let request = HybridSearchRequest::builder()
            .collection_name(&self.names.records)
            .sub_requests(vec![sparse, dense])
            .rerank(RRFRerank::new().k(crate::search::RRF_K as i64))
            .limit(depth as i64)
            .output_fields([RECORD, TEXT, HAS_TEXT])
            .consistency_level(self.m.consistency())
            .build()
            .map_err(fail)?;
        let hits = self.m.block("hybrid search", async {
            let response = self.m.client().hybrid_search(request).await?;
            first_hits(response.results().iter().next())
        })?;
        hits.into_iter()
            .map(|(key, score, row)| {
                let similarity = match rows::has_text(&row) {
                    true => rows::vector(&row, TEXT).ok().map(|v| dot(&v, vector)),
                    false => None,
                };
                Ok(Fused {
                    id: to_id(key),
                    score,
                    similarity,
                    record: stored(&row).map_err(|e| self.m.fail(e))?,
                })
            })
            .collect()
    }

    /// One `id in [..]` query per thousand ids.
    fn records(&self, ids: &[u64]) -> Result<Vec<Option<Stored>>> {
        let mut found: HashMap<i64, Stored> = HashMap::with_capacity(ids.len());
        let keys: Vec<i64> = ids.iter().map(|&id| to_key(id)).collect();
        for page in keys.chunks(PAGE) {
            let filter = in_filter(ID, page);
            for row in self
                .m
                .query(&self.names.records, &filter, &[ID, RECORD], None)?
            {
                let key = rows::key(&row).map_err(|e| self.m.fail(e))?;
                found.insert(key, stored(&row).map_err(|e| self.m.fail(e))?);
            }
        }
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    fn has_vectors(&self, space: Space) -> bool {
        match space {
            Space::Prompts => self.spaces[0],
            Space::Images => self.spaces[1],
            Space::Aligned => self.spaces[2],
        }
    }

    /// The writers' running sums added up when the reader opened ([`super::manifest`]).
    fn mean_prompt(&self) -> Option<&[f32]> {
        self.mean.as_deref()
    }

    /// A query iterator over the records, a thousand at a time, in key order.
    fn for_each_prompt(&self, f: &mut dyn FnMut(u64, &str)) -> Result<()> {
        let fail = |e: String| self.m.fail(e);
        self.m
            .scan(&self.names.records, "", &[ID, PROMPT], None, &mut |page| {
                for row in &page {
                    let prompt = rows::prompt(row);
                    if !prompt.is_empty() {
                        f(to_id(rows::key(row).map_err(fail)?), prompt);
                    }
                }
                Ok(true)
            })
            .map(|_| ())
    }

    /// None: every call answers from the live server, so there is nothing to reload.
    fn watermark(&self) -> Result<Option<IndexWatermark>> {
        Ok(None)
    }
}
