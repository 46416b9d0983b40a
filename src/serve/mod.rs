//! Serve: the HTTP API and the web page over one index (`promptdex serve`).
//!
//! The models are loaded once, the index is opened read-only (no writer lock, so several
//! servers can share it) and reopened when it moves on (records added while the server runs
//! are served within seconds, see [`reload`]), and model work runs on fixed thread pools with
//! bounded queues, never on the async runtime.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page (HTML, JS and CSS bundled into the binary) |
//! | `GET /healthz` | `{"status":"ok"}` |
//! | `GET /api/stats` | records, the index generation served, models, index size, pool counters |
//! | `GET /api/search?q=&k=&mode=` | `search --json`: a list of prompt hits |
//! | `POST /api/search/image?k=` | `search --image --json`: nearest images and prompts |
//! | `POST /api/generate?metadata=` | one `generate --json` result (the `Generated` object) |
//! | `GET /api/images/{id}[?thumb=1]` | an indexed image, or its JPEG thumbnail |
//! | `POST /sdapi/v1/interrogate`, `POST /sdapi/v1/png-info`, `GET /sdapi/v1/interrogators` | AUTOMATIC1111's API for prompts ([`a1111`]) |
//!
//! Every error is JSON `{"error": CODE, "detail": TEXT}` with a 4xx or 5xx status; a full
//! queue is `503` with `Retry-After`.
//!
//! - [`error`]: the error type and its JSON.
//! - [`pool`]: worker threads behind a bounded queue.
//! - [`query`]: strict query-string decoding.
//! - [`upload`]: reading an uploaded image (raw or multipart) within limits.
//! - [`api`]: the JSON handlers.
//! - [`a1111`]: AUTOMATIC1111's routes, for its clients.
//! - [`images`]: indexed images and thumbnails by record id.
//! - [`reload`]: following the index as writers add to it.
//! - [`page`]: the static page.

pub mod a1111;
pub mod api;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod images;
pub mod page;
pub mod pool;
pub mod query;
pub mod reload;
pub mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower_http::catch_panic::CatchPanicLayer;

use crate::generate::{open_generator, GenerateConfig, Generator, LoadOptions};
use crate::ingest::DecodeLimits;
use crate::store::Location;
use crate::{Error, Result};
use error::ApiError;
use pool::Pool;
use reload::{Following, Served};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port; the line printed says which).
    pub addr: SocketAddr,
    /// The index (opened read-only): a directory or a Milvus URL.
    pub index: Location,
    /// The models folder.
    pub models_root: PathBuf,
    /// How prompts are generated.
    pub generate: GenerateConfig,
    /// Which models to load besides the index's (captioners, a local encoder folder).
    pub load: LoadOptions,
    /// Largest upload accepted, in bytes.
    pub max_upload: usize,
    /// Largest width or height of an uploaded image, in pixels.
    pub max_side: u32,
    /// Largest decoder allocation for one image, in bytes.
    pub max_alloc: u64,
    /// Model worker threads (0: one per core).
    pub workers: usize,
    /// Requests that may wait for a worker beyond the running ones; more are refused with 503.
    pub queue: usize,
    /// Longest a request may take, upload included.
    pub timeout: Duration,
    /// Longest a client may take to send a request's headers (slow clients hold a connection
    /// and nothing else).
    pub header_timeout: Duration,
    /// How often the index is checked for new records (zero: never; the index opened at
    /// start is served throughout).
    pub reload_interval: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            index: Location::Dir(PathBuf::from("index")),
            models_root: crate::models::models_root(),
            generate: GenerateConfig::default(),
            load: LoadOptions::default(),
            max_upload: 20 << 20,
            // 8k x 8k covers SD outputs and common upscales; more is refused before decoding.
            max_side: 8192,
            // An 8k x 8k RGBA image needs 256 MiB.
            max_alloc: 256 << 20,
            workers: 0,
            queue: 32,
            timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            // A few small file reads per check; new records show within seconds.
            reload_interval: Duration::from_secs(2),
        }
    }
}

/// The limits handlers apply.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest upload, bytes.
    pub max_upload: usize,
    /// Longest request.
    pub timeout: Duration,
    /// Decoder limits for uploads and thumbnails.
    pub decode: DecodeLimits,
}

/// What every handler shares.
pub struct AppState {
    /// The index generation being served, with the models.
    pub following: Arc<Following>,
    /// Image work: generation, search by image.
    pub inference: Pool,
    /// Text searches (a query embedding each), kept apart so typing stays quick while images
    /// are worked on.
    pub search: Pool,
    /// Reading images and making thumbnails.
    pub files: Pool,
    /// Limits.
    pub limits: Limits,
    /// When the server started.
    pub started: Instant,
    /// Thumbnails made so far.
    pub thumbnails: images::Thumbnails,
}

impl AppState {
    /// State over a loaded generator, with pools sized by `config`.
    pub fn new(generator: Generator, config: &ServeConfig) -> Result<Self> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.workers
        };
        let pool = |name, workers, queue| {
            Pool::new(name, workers, queue)
                .map_err(|e| Error::Invalid(format!("cannot start the {name} workers: {e}")))
        };
        Ok(Self {
            following: Arc::new(Following::new(Served::first(generator)?)),
            inference: pool("inference", workers, config.queue)?,
            search: pool("search", workers, config.queue * 2)?,
            files: pool("files", workers, config.queue * 4)?,
            limits: Limits {
                max_upload: config.max_upload,
                timeout: config.timeout,
                decode: DecodeLimits {
                    max_file_bytes: config.max_upload as u64,
                    max_side: config.max_side,
                    max_alloc: config.max_alloc,
                    ..DecodeLimits::default()
                },
            },
            started: Instant::now(),
            thumbnails: images::Thumbnails::default(),
        })
    }

    /// The index generation to answer a request with (requests in flight keep theirs).
    pub fn served(&self) -> Arc<Served> {
        self.following.current()
    }

    /// The current generation's generator.
    pub fn generator(&self) -> Arc<Generator> {
        Arc::clone(&self.served().generator)
    }
}

/// The application: every route, the fallbacks and the middleware.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::script))
        .route("/assets/style.css", get(page::style))
        .route("/healthz", get(api::healthz))
        .route("/api/stats", get(api::stats))
        .route("/api/search", get(api::search))
        .route("/api/search/image", post(api::search_image))
        .route("/api/generate", post(api::generate))
        .route("/api/images/{id}", get(images::image))
        .route("/sdapi/v1/interrogate", post(a1111::interrogate))
        .route("/sdapi/v1/png-info", post(a1111::png_info))
        .route("/sdapi/v1/interrogators", get(a1111::interrogators))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .with_state(Arc::clone(&state));
    api.layer(middleware::from_fn_with_state(state, deadline))
        .layer(middleware::map_response(json_errors))
        .layer(CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                ApiError::internal(format!(
                    "the request handler failed: {}",
                    pool::panic_message(panic.as_ref())
                ))
                .into_response()
            },
        ))
}

/// Answers `503 timeout` when a request takes longer than the configured limit; the work
/// it queued is dropped unrun if no worker has taken it yet.
async fn deadline(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = app.limits.timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(limit.as_secs()).into_response(),
    }
}

/// Turns any error that is not JSON yet (from a layer or the framework) into
/// `{"error", "detail"}`, and marks every answer `nosniff`.
async fn json_errors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let detail = status.canonical_reason().unwrap_or("error");
    let mut json = ApiError::new(status, code, detail).into_response();
    if let Some(retry) = response.headers().get(header::RETRY_AFTER) {
        json.headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    json
}

/// Loads the models and the index, listens on `config.addr`, prints
/// `listening on http://ADDR` on stdout once ready, and serves until Ctrl-C or SIGTERM.
pub fn run(config: &ServeConfig, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let generator = open_generator(
        &config.models_root,
        &config.index,
        &config.load,
        config.generate.clone(),
        progress,
    )?;
    let state = Arc::new(AppState::new(generator, config)?);
    if !config.reload_interval.is_zero() {
        reload::spawn_follower(Arc::downgrade(&state.following), config.reload_interval)
            .map_err(|e| Error::Invalid(format!("cannot start the index follower: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Handlers only parse, wait and copy: the heavy work is on the pools.
        .worker_threads(2)
        .thread_name("serve-io")
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", config.addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", config.addr)))?;
        println!("listening on http://{addr}");
        serve_connections(listener, router(state), config.header_timeout).await;
        Ok(())
    })
}

/// Accepts connections until Ctrl-C or SIGTERM, serving each with HTTP/1.1 under a deadline for
/// its request headers, then lets open connections finish (for up to [`DRAIN`]).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait for some to close.
                        eprintln!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that hangs up or stalls ends only its own connection.
                    let _ = connection.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// How long open connections may finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
