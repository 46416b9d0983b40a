//! The connection to a Milvus server, made blocking: the SDK (`milvus-sdk-rust`, `ClientV2`)
//! is async (tonic), the store's traits are not. Each [`Milvus`] owns a small tokio runtime
//! (one worker thread, which also drives the gRPC channel's background task) and blocks on
//! it for every call.
//!
//! Callers are plain threads: the CLI's, rayon's, and `serve`'s worker pools
//! (`crate::serve::pool`), which are std threads outside any runtime. A call made from inside
//! a tokio runtime (where blocking on another runtime would panic) runs on a scoped helper
//! thread instead, so it works from anywhere; it still blocks its caller. The runtime is shut
//! down without waiting on drop, so a reader may also be dropped on an async thread.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use milvus::v2::prelude::{
    ClientV2, ConnectConfig, ConsistencyLevel, DeleteRequest, FlushRequest,
    GetServerVersionRequest, HasCollectionRequest, InsertRequest, QueryRequest, RetryConfig,
    TelemetryConfig, UpsertRequest,
};
use serde_json::{Map, Value};

use crate::store::{Location, MilvusUrl};
use crate::{Error, Result};

/// How long a server may take to answer the first call before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one call may take (a search over a large collection, a flush).
const RPC_TIMEOUT: Duration = Duration::from_secs(300);
/// Rows per query page and per upsert.
pub const PAGE: usize = 1000;
/// The oldest Milvus release the schema works on: BM25 functions (full-text search) came in 2.5.
const OLDEST_RELEASE: (u32, u32) = (2, 5);

/// A row as the SDK decodes it: field name -> JSON value.
pub type Row = Map<String, Value>;

/// A connected client and the runtime it runs on.
pub struct Milvus {
    url: MilvusUrl,
    location: Location,
    client: ClientV2,
    runtime: Option<tokio::runtime::Runtime>,
    /// Consistency of reads: `Strong` for writers (they read what they just wrote), `Bounded`
    /// for searches.
    consistency: ConsistencyLevel,
}

impl Drop for Milvus {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Milvus {
    /// Connects to the server `url` names; fails within [`CONNECT_TIMEOUT`] when it does not
    /// answer, and with a clear message when it refuses the token.
    pub fn connect(url: &MilvusUrl, consistency: ConsistencyLevel) -> Result<Self> {
        let location = Location::Milvus(url.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("milvus-client")
            .enable_all()
            .build()
            .map_err(|e| Error::io(location.path(), e))?;
        let mut config = ConnectConfig::new()
            .uri(url.endpoint())
            .connect_timeout(CONNECT_TIMEOUT)
            .rpc_timeout(RPC_TIMEOUT)
            .retry(RetryConfig::new().max_retry_timeout(Duration::from_secs(30)))
            .telemetry(TelemetryConfig::new().enabled(false));
        if let Some(token) = &url.token {
            config = config.token(token.clone());
        }
        if let Some(db) = &url.db {
            config = config.database(db.clone());
        }
        let connecting = async move {
            tokio::time::timeout(CONNECT_TIMEOUT * 2, ClientV2::new(&config))
                .await
                .unwrap_or_else(|_| Err(milvus::v2::error::Error::Timeout("connecting".into())))
        };
        let client =
            block_on(&runtime, connecting).map_err(|e| connect_error(url, &location, &e))?;
        let milvus = Self {
            url: url.clone(),
            location,
            client,
            runtime: Some(runtime),
            consistency,
        };
        milvus.check_release()?;
        Ok(milvus)
    }

    /// Refuses a server older than [`OLDEST_RELEASE`], which would take the collections' BM25
    /// function without complaint and then time out loading them. A version text that is not
    /// `[v]MAJOR.MINOR…` (milvus-lite says `milvus_lite-3.2.2`; managed services say their own
    /// thing) passes: later calls then speak for themselves.
    fn check_release(&self) -> Result<()> {
        let request = GetServerVersionRequest::builder()
            .build()
            .map_err(|e| self.fail(e.to_string()))?;
        let version = self.block("asking the server's version", async {
            Ok(self
                .client
                .server_version(request)
                .await?
                .version()
                .to_string())
        })?;
        match release(&version) {
            Some(found) if found < OLDEST_RELEASE => Err(self.fail(format!(
                "the server at {}:{} runs Milvus {version}; promptdex needs Milvus {}.{} or newer \
                 (BM25 full-text search)",
                self.url.host, self.url.port, OLDEST_RELEASE.0, OLDEST_RELEASE.1
            ))),
            _ => Ok(()),
        }
    }

    /// Where the index lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The index's location as messages name it (never the token).
    pub fn path(&self) -> &Path {
        self.location.path()
    }

    /// The index name (the collections' prefix).
    pub fn name(&self) -> &str {
        &self.url.name
    }

    /// The SDK client, for requests built by the caller.
    pub fn client(&self) -> &ClientV2 {
        &self.client
    }

    /// The read consistency this connection uses.
    pub fn consistency(&self) -> ConsistencyLevel {
        self.consistency
    }

    /// An error about this index.
    pub fn fail(&self, detail: impl Into<String>) -> Error {
        Error::index(self.path(), detail)
    }

    /// Runs `call` to completion; an SDK error becomes an [`Error::Index`] naming the URL and
    /// `what` was being done.
    pub fn block<T, F>(&self, what: &str, call: F) -> Result<T>
    where
        T: Send,
        F: Future<Output = milvus::v2::error::Result<T>> + Send,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::Internal("the Milvus client was shut down".into()))?;
        block_on(runtime, call).map_err(|e| {
            let text = describe(&e);
            if refused_credentials(&e) {
                self.fail(format!("{what}: {}", refused(&self.url, &text)))
            } else {
                self.fail(format!("{what}: {text}"))
            }
        })
    }

    /// True when collection `name` exists.
    pub fn has_collection(&self, name: &str) -> Result<bool> {
        let request = HasCollectionRequest::builder()
            .collection_name(name)
            .build()
            .map_err(|e| self.fail(e.to_string()))?;
        self.block(&format!("looking for collection {name}"), async {
            Ok(self.client.has_collection(request).await?.exists())
        })
    }

    /// The rows of `collection` matching `filter`, with `fields` (at most `limit` rows).
    pub fn query(
        &self,
        collection: &str,
        filter: &str,
        fields: &[&str],
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let mut request = QueryRequest::builder()
            .collection_name(collection)
            .filter(filter)
            .output_fields(fields.iter().copied())
            .consistency_level(self.consistency);
        if let Some(limit) = limit {
            request = request.limit(limit as i64);
        }
        let request = request.build().map_err(|e| self.fail(e.to_string()))?;
        let what = format!("querying {collection} ({})", shorten(filter));
        self.block(&what, async {
            let response = self.client.query(request).await?;
            response
                .results()
                .rows()?
                .map(|row| row.to_entity_row())
                .collect::<milvus::v2::error::Result<Vec<Row>>>()
        })
    }

    /// The number of rows of `collection` matching `filter` (all rows when empty).
    pub fn count(&self, collection: &str, filter: &str) -> Result<u64> {
        let rows = self.query(collection, filter, &["count(*)"], None)?;
        rows.first()
            .and_then(|row| row.get("count(*)"))
            .and_then(Value::as_u64)
            .ok_or_else(|| self.fail(format!("counting {collection}: the server sent no count")))
    }

    /// Inserts or replaces `rows` (whole rows, keyed by their primary key) in `collection`.
    pub fn upsert(&self, collection: &str, rows: Vec<Value>) -> Result<()> {
        for page in rows.chunks(PAGE) {
            let insert = InsertRequest::builder()
                .collection_name(collection)
                .rows(page.to_vec())
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            let request = UpsertRequest::builder()
                .insert(insert)
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            self.block(
                &format!("writing {} rows to {collection}", page.len()),
                async { self.client.upsert(request).await.map(|_| ()) },
            )?;
        }
        Ok(())
    }

    /// Deletes the rows with these primary keys from `collection`.
    pub fn delete(&self, collection: &str, keys: &[i64]) -> Result<()> {
        for page in keys.chunks(PAGE) {
            let request = DeleteRequest::builder()
                .collection_name(collection)
                .filter(super::keys::in_filter("id", page))
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            self.block(&format!("deleting from {collection}"), async {
                self.client.delete(request).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// Calls `page` with the rows of `collection` matching `filter` (all when empty), a page
    /// at a time in key order, from the first key after `after`, until it returns false or
    /// the rows run out. Returns the key of the last row handed over.
    pub fn scan(
        &self,
        collection: &str,
        filter: &str,
        fields: &[&str],
        after: Option<i64>,
        page: &mut dyn FnMut(Vec<Row>) -> Result<bool>,
    ) -> Result<Option<i64>> {
        // Pages by primary key (`id > last`, `iterator=true`: the server returns the
        // smallest keys first). The SDK's query iterator needs a collection id milvus-lite
        // does not report.
        let mut last = after;
        loop {
            let mut clauses: Vec<String> = Vec::new();
            if let Some(key) = last {
                clauses.push(format!("id > {key}"));
            }
            if !filter.is_empty() {
                clauses.push(format!("({filter})"));
            }
            let request = QueryRequest::builder()
                .collection_name(collection)
                .filter(clauses.join(" and "))
                .output_fields(fields.iter().copied().chain(["id"]))
                .limit(PAGE as i64)
                .extra_params(std::collections::HashMap::from([(
                    "iterator".to_string(),
                    "true".to_string(),
                )]))
                .consistency_level(self.consistency)
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            let what = format!("reading {collection}");
            let mut batch = self.block(&what, async {
                let response = self.client.query(request).await?;
                response
                    .results()
                    .rows()?
                    .map(|row| row.to_entity_row())
                    .collect::<milvus::v2::error::Result<Vec<Row>>>()
            })?;
            batch.sort_by_key(|row| row.get("id").and_then(Value::as_i64).unwrap_or(i64::MIN));
            let full = batch.len() >= PAGE;
            if let Some(key) = batch
                .last()
                .and_then(|row| row.get("id"))
                .and_then(Value::as_i64)
            {
                last = Some(key);
            }
            if batch.is_empty() || !page(batch)? || !full {
                return Ok(last);
            }
        }
    }

    /// Seals what was written to `collections` (waits for the flush).
    pub fn flush(&self, collections: &[String]) -> Result<()> {
        let request = FlushRequest::builder()
            .collection_names(collections.iter().cloned())
            .wait_flushed_ms(120_000)
            .build()
            .map_err(|e| self.fail(e.to_string()))?;
        self.block("flushing", async {
            self.client.flush(request).await.map(|_| ())
        })
    }
}

/// Blocks on `future`, from a helper thread when the caller is itself on a tokio runtime.
fn block_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    std::thread::scope(
        |scope| match scope.spawn(|| runtime.block_on(future)).join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    )
}

/// The message for a failed connection: unreachable, or the token refused.
fn connect_error(url: &MilvusUrl, location: &Location, e: &milvus::v2::error::Error) -> Error {
    let text = describe(e);
    let detail = if refused_credentials(e) {
        refused(url, &text)
    } else {
        format!(
            "cannot reach a Milvus server at {}:{} within {} s: {text}",
            url.host,
            url.port,
            CONNECT_TIMEOUT.as_secs()
        )
    };
    Error::index(location.path(), detail)
}

/// The message for credentials the server at `url` refused.
fn refused(url: &MilvusUrl, text: &str) -> String {
    format!(
        "the server at {}:{} refused the credentials (check ?token= or MILVUS_TOKEN): {text}",
        url.host, url.port
    )
}

/// True when `e` says the server refused the request's credentials: gRPC's
/// `UNAUTHENTICATED`/`PERMISSION_DENIED` (what Milvus's proxy answers a wrong token with), or
/// a Milvus status with the legacy `PermissionDenied` code, also after retries.
#[allow(deprecated)] // `ErrorCode`: servers still send it beside the newer numeric codes.
fn refused_credentials(e: &milvus::v2::error::Error) -> bool {
    use milvus::proto::common::ErrorCode;
    use milvus::v2::error::Error as Sdk;
    match e {
        Sdk::Grpc(status) => matches!(
            status.code(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
        ),
        Sdk::Server(server) => server.legacy_code() == ErrorCode::PermissionDenied as i32,
        Sdk::RetryExhausted { source, .. } => refused_credentials(source),
        _ => false,
    }
}

/// An SDK error as one line, with its source chain. A gRPC status is its code and message
/// alone: its Display adds empty details and the response headers, noise to a reader.
fn describe(e: &milvus::v2::error::Error) -> String {
    use milvus::v2::error::Error as Sdk;
    let (mut text, mut source) = match e {
        Sdk::Grpc(status) => (
            format!("gRPC {:?}: {}", status.code(), status.message()),
            std::error::Error::source(status),
        ),
        Sdk::RetryExhausted { attempts, source } => {
            return format!("after {attempts} attempts: {}", describe(source));
        }
        _ => (e.to_string(), std::error::Error::source(e)),
    };
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// `(major, minor)` of a Milvus version text such as `v2.3.5-lite` or `2.6.1`.
fn release(version: &str) -> Option<(u32, u32)> {
    let mut parts = version
        .strip_prefix('v')
        .unwrap_or(version)
        .split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A filter cut for messages.
fn shorten(filter: &str) -> String {
    match filter.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &filter[..at]),
        None => filter.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> MilvusUrl {
        MilvusUrl::parse("milvus://db.example:19530/prompts?token=secret", None).unwrap()
    }

    #[test]
    fn a_refused_token_is_named_as_such_and_never_shown() {
        let location = Location::Milvus(url());
        // What Milvus's proxy answers a wrong token with.
        let status = tonic::Status::unauthenticated(
            "auth check failure, please check username, password or API key are correct",
        );
        for e in [
            milvus::v2::error::Error::Grpc(status.clone()),
            milvus::v2::error::Error::RetryExhausted {
                attempts: 3,
                source: Box::new(milvus::v2::error::Error::Grpc(status)),
            },
        ] {
            let message = connect_error(&url(), &location, &e).to_string();
            assert!(
                message.contains(
                    "db.example:19530 refused the credentials (check ?token= or MILVUS_TOKEN)"
                ),
                "{message}"
            );
            assert!(!message.contains("secret"), "{message}");
            assert!(
                message.contains("gRPC Unauthenticated: auth check failure"),
                "{message}"
            );
            assert!(!message.contains("MetadataMap"), "{message}");
        }
    }

    #[test]
    fn release_numbers_are_read_where_there_are_any() {
        assert_eq!(release("v2.3.5-lite"), Some((2, 3)));
        assert_eq!(release("v2.5.0"), Some((2, 5)));
        assert_eq!(release("2.6.1"), Some((2, 6)));
        assert!(release("v2.4.17").unwrap() < OLDEST_RELEASE);
        assert!(release("v3.0.0").unwrap() >= OLDEST_RELEASE);
        assert_eq!(release("milvus_lite-3.2.2"), None);
        assert_eq!(release("Zilliz Cloud"), None);
        assert_eq!(release(""), None);
    }

    #[test]
    fn an_unanswered_connection_is_unreachable_not_refused() {
        let e = milvus::v2::error::Error::Grpc(tonic::Status::unavailable("connection refused"));
        let message = connect_error(&url(), &Location::Milvus(url()), &e).to_string();
        assert!(
            message.contains("cannot reach a Milvus server at db.example:19530 within 5 s"),
            "{message}"
        );
    }
}
