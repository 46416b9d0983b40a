//! The collections of one Milvus index, their fields and indexes, created when missing.
//!
//! One vector field per collection (milvus-lite allows no more, and the image and aligned
//! dimensions are only known once an image model is chosen), all keyed by the same stable
//! record key ([`super::keys`]):
//!
//! | collection       | fields                                                                  |
//! |------------------|-------------------------------------------------------------------------|
//! | `NAME_records`   | `id`, `kind` (`prompt`/`image`), `has_text`, `prompt` (analysed; BM25 function into `sparse`), `sparse`, `text` (MiniLM, HNSW/IP; zeros when `has_text` is false), `record` (JSON: the whole [`crate::store::Record`]) |
//! | `NAME_images`    | `id`, `vector` (the image encoder's, HNSW/IP)                           |
//! | `NAME_aligned`   | `id`, `vector` (the prompt in a text-aligned image model's space)       |
//! | `NAME_paths`     | `id` (key of the path), `path` (hex of its bytes), `record`, `size`, `mtime`, `unused` (2-d zeros: Milvus wants a vector field) |
//! | `NAME_manifest`  | `id` (0: the manifest; else one writer's prompt-vector sum), `doc` (JSON), `count`, `sum` |
//!
//! Vector fields are not nullable (a Milvus 2.5 server refuses nullable vectors), so an image
//! without a prompt carries a zero `text` vector and `has_text == false`, which every
//! semantic search filters out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use milvus::v2::prelude::{
    CollectionSchema, CreateCollectionRequest, DataType, FieldSchema, Function, FunctionType,
    IndexParam, IndexType, LoadCollectionRequest, MetricType,
};

use super::client::Milvus;
use crate::store::HnswParams;
use crate::Result;

/// Primary key of every collection.
pub const ID: &str = "id";
/// `prompt` or `image`.
pub const KIND: &str = "kind";
/// True when `text` is a real MiniLM vector.
pub const HAS_TEXT: &str = "has_text";
/// The prompt text (empty for an image without one).
pub const PROMPT: &str = "prompt";
/// BM25 output of `prompt`.
pub const SPARSE: &str = "sparse";
/// MiniLM vector of the prompt.
pub const TEXT: &str = "text";
/// The whole record, as JSON.
pub const RECORD: &str = "record";
/// The vector of the image and aligned collections.
pub const VECTOR: &str = "vector";
/// The paths collection's hex path.
pub const PATH: &str = "path";
/// File size of a path.
pub const SIZE: &str = "size";
/// Modification time of a path, nanoseconds.
pub const MTIME: &str = "mtime";
/// The paths collection's placeholder vector.
pub const UNUSED: &str = "unused";
/// The manifest collection's JSON document.
pub const DOC: &str = "doc";
/// Number of vectors summed in a manifest row.
pub const COUNT: &str = "count";
/// Sum of prompt vectors in a manifest row.
pub const SUM: &str = "sum";

/// Longest prompt in bytes (the ingest limit is 16 KiB).
const PROMPT_BYTES: u32 = 65_535;

/// The collection names of index `name`.
#[derive(Debug, Clone)]
pub struct Names {
    /// Every record, its prompt, BM25 and MiniLM vector.
    pub records: String,
    /// Image vectors.
    pub images: String,
    /// Prompts in the image model's space.
    pub aligned: String,
    /// Image paths -> record.
    pub paths: String,
    /// The manifest and the prompt-vector sums.
    pub manifest: String,
}

impl Names {
    /// The collections of index `name`.
    pub fn new(name: &str) -> Self {
        Self {
            records: format!("{name}_records"),
            images: format!("{name}_images"),
            aligned: format!("{name}_aligned"),
            paths: format!("{name}_paths"),
            manifest: format!("{name}_manifest"),
        }
    }
}

fn field(name: &str, data_type: DataType) -> FieldSchema {
    FieldSchema::new().name(name).data_type(data_type)
}

fn key_field() -> FieldSchema {
    field(ID, DataType::Int64).primary_key(true).auto_id(false)
}

fn vector_field(name: &str, dim: usize) -> FieldSchema {
    field(name, DataType::FloatVector).dimension(dim as u32)
}

/// HNSW with inner product (the vectors are unit length) and the manifest's graph parameters.
fn hnsw(field: &str, params: &HnswParams) -> IndexParam {
    let extra = HashMap::from([
        ("M".to_string(), params.max_connections.to_string()),
        (
            "efConstruction".to_string(),
            params.ef_construction.to_string(),
        ),
    ]);
    IndexParam::new()
        .field_name(field)
        .index_type(IndexType::Hnsw)
        .metric_type(MetricType::Ip)
        .extra_params(extra)
}

fn flat(field: &str) -> IndexParam {
    IndexParam::new()
        .field_name(field)
        .index_type(IndexType::Flat)
        .metric_type(MetricType::Ip)
}

/// Creates (when missing) and loads the records collection.
pub fn ensure_records(m: &Milvus, names: &Names, dim: usize, params: &HnswParams) -> Result<()> {
    let schema = CollectionSchema::new()
        .add_field(key_field())
        .add_field(field(KIND, DataType::VarChar).max_length(16))
        .add_field(field(HAS_TEXT, DataType::Bool))
        .add_field(
            field(PROMPT, DataType::VarChar)
                .max_length(PROMPT_BYTES)
                .enable_analyzer(true),
        )
        .add_field(field(SPARSE, DataType::SparseFloatVector))
        .add_field(vector_field(TEXT, dim))
        .add_field(field(RECORD, DataType::Json))
        .add_function(
            Function::new()
                .name("prompt_bm25")
                .function_type(FunctionType::Bm25)
                .input_fields([PROMPT])
                .output_fields([SPARSE]),
        );
    let bm25 = IndexParam::new()
        .field_name(SPARSE)
        .index_type(IndexType::SparseInvertedIndex)
        .metric_type(MetricType::Bm25);
    ensure(m, &names.records, schema, vec![hnsw(TEXT, params), bm25])
}

/// Creates (when missing) and loads a collection of `dim`-d vectors keyed by record.
pub fn ensure_vectors(m: &Milvus, name: &str, dim: usize, params: &HnswParams) -> Result<()> {
    let schema = CollectionSchema::new()
        .add_field(key_field())
        .add_field(vector_field(VECTOR, dim));
    ensure(m, name, schema, vec![hnsw(VECTOR, params)])
}

/// Creates (when missing) and loads the paths collection.
pub fn ensure_paths(m: &Milvus, names: &Names) -> Result<()> {
    let schema = CollectionSchema::new()
        .add_field(key_field())
        .add_field(field(PATH, DataType::VarChar).max_length(PROMPT_BYTES))
        .add_field(field(RECORD, DataType::Int64))
        .add_field(field(SIZE, DataType::Int64))
        .add_field(field(MTIME, DataType::Int64))
        .add_field(vector_field(UNUSED, 2));
    ensure(m, &names.paths, schema, vec![flat(UNUSED)])
}

/// Creates (when missing) and loads the manifest collection (`dim`: the text model's).
pub fn ensure_manifest(m: &Milvus, names: &Names, dim: usize) -> Result<()> {
    let schema = CollectionSchema::new()
        .add_field(key_field())
        .add_field(field(DOC, DataType::Json))
        .add_field(field(COUNT, DataType::Int64))
        .add_field(vector_field(SUM, dim));
    ensure(m, &names.manifest, schema, vec![flat(SUM)])
}

/// How long a writer whose creation of a collection failed waits for another writer's
/// creation of it to show (milvus-lite refuses the second creation while the first is still
/// under way, before the collection is listed).
const CREATION_RACE: Duration = Duration::from_secs(10);

/// Creates `name` with `schema` and `indexes` unless it exists, then loads it. Two writers
/// creating it at once are fine: the loser finds it made, waiting for it for up to
/// [`CREATION_RACE`].
fn ensure(
    m: &Milvus,
    name: &str,
    schema: CollectionSchema,
    indexes: Vec<IndexParam>,
) -> Result<()> {
    if !m.has_collection(name)? {
        let request = CreateCollectionRequest::builder()
            .collection_name(name)
            .schema(schema)
            .index_params(indexes)
            .build()
            .map_err(|e| m.fail(format!("collection {name}: {e}")))?;
        let created = m.block(&format!("creating collection {name}"), async {
            m.client().create_collection(request).await
        });
        if let Err(e) = created {
            let clock = Instant::now();
            while !m.has_collection(name)? {
                if clock.elapsed() > CREATION_RACE {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    load(m, name)
}

/// Loads `name` into memory for searching (waits until it is).
pub fn load(m: &Milvus, name: &str) -> Result<()> {
    let request = LoadCollectionRequest::builder()
        .collection_name(name)
        .build()
        .map_err(|e| m.fail(format!("collection {name}: {e}")))?;
    m.block(&format!("loading collection {name}"), async {
        m.client().load_collection(request).await
    })
}
