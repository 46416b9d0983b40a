//! The JSON API: prompt search, search by image, generation, health and statistics.
//!
//! Every handler checks its input on the async runtime, then hands the model work to a
//! [`Pool`](super::pool::Pool) and awaits it; the answers are the library's own serialised
//! types, the same JSON as the command line's `--json`.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use image::DynamicImage;
use serde::Serialize;
use serde_json::json;

use super::error::{ApiError, ApiResult, JSON};
use super::query::Query;
use super::upload::{read_upload, Upload};
use super::AppState;
use crate::generate::{Exclude, Generator};
use crate::ingest::decode_pixels;
use crate::ingest::read_metadata_bytes;
use crate::search::{search_by_image, search_prompts, SearchConfig, SearchMode, MAX_K};
use crate::{Error, Result};

/// Longest search text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// `value` as a JSON response.
pub fn json_response<T: Serialize>(value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
        body,
    )
        .into_response())
}

/// `GET /healthz`: `{"status":"ok"}` once the models are loaded (the server answers nothing
/// before).
pub async fn healthz() -> ApiResult<Response> {
    json_response(&json!({"status": "ok"}))
}

/// `GET /api/search?q=TEXT&k=10&mode=hybrid|semantic|bm25`: the prompts like `q`, as
/// `promptdex search --json` prints them.
pub async fn search(State(app): State<Arc<AppState>>, uri: Uri) -> ApiResult<Response> {
    let query = Query::parse(uri.query())?;
    let text = query
        .get("q")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("`q` (the text to search for) is missing or empty"))?
        .to_string();
    if text.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "`q` is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    let k = query.number("k", 10, 1, MAX_K)?;
    let mode = match query.get("mode").unwrap_or("hybrid") {
        "hybrid" => SearchMode::Hybrid,
        "semantic" => SearchMode::Semantic,
        "bm25" => SearchMode::Bm25,
        other => {
            return Err(ApiError::bad_request(format!(
                "`mode` must be hybrid, semantic or bm25, not `{}`",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    let generator = app.generator();
    let config = SearchConfig {
        k,
        mode,
        ..SearchConfig::default()
    };
    let hits = app
        .search
        .run(move || {
            search_prompts(
                generator.index(),
                generator.models().text.as_ref(),
                &text,
                &config,
            )
        })
        .await??;
    json_response(&hits)
}

/// `POST /api/search/image?k=12` with an image (raw body or multipart): the nearest indexed
/// images and their prompts, as `promptdex search --image --json` prints them.
pub async fn search_image(
    State(app): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let query = Query::parse(uri.query())?;
    let k = query.number("k", 12, 1, MAX_K)?;
    let generator = app.generator();
    if generator.index().manifest().image_model.is_none() {
        return Err(ApiError::not_found(
            "the index holds no images; add some with `promptdex index FOLDER`",
        ));
    }
    let upload = read_upload(&headers, body, app.limits.max_upload, app.limits.timeout).await?;
    let found = work_on_upload(&app, upload, Some(generator), move |generator, _, image| {
        let encoder = generator
            .models()
            .image
            .as_ref()
            .ok_or_else(|| Error::Invalid("no image encoder is loaded".into()))?;
        search_by_image(
            generator.index(),
            encoder.as_ref(),
            &image.into_rgb8(),
            k,
            generator.config().ef,
        )
    })
    .await?;
    json_response(&found)
}

/// `POST /api/generate?metadata=1` with an image (raw body or multipart): the generated
/// prompt, as one `result` of `promptdex generate --json`. `metadata=0` ignores a prompt
/// stored in the file.
pub async fn generate(
    State(app): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let query = Query::parse(uri.query())?;
    let use_metadata = query.flag("metadata", true)?;
    let upload = read_upload(&headers, body, app.limits.max_upload, app.limits.timeout).await?;
    let generated = work_on_upload(&app, upload, None, move |generator, upload, image| {
        use image::ImageFormat::{Gif, Jpeg, Png, WebP};
        // Metadata trouble is a warning in the answer, never a refused upload.
        let mut read = (use_metadata && matches!(upload.format, Png | Jpeg | WebP | Gif))
            .then(|| read_metadata_bytes(&upload.name, &upload.bytes));
        if let Some(read) = read.as_mut() {
            // Stealth text in the pixels when the chunks had none, as `index` reads it.
            read.fill_from_pixels(Path::new(&upload.name), &image);
        }
        let embedded = read.as_ref().and_then(|r| r.prompt.clone());
        let image = image.into_rgb8();
        let mut generated = generator.generate(&image, embedded, &Exclude::none())?;
        if let Some(read) = read {
            generated.warnings = read.warnings.iter().map(ToString::to_string).collect();
        }
        Ok(generated)
    })
    .await?;
    json_response(&generated)
}

/// Runs `work` on the inference pool with `upload`, its pixels decoded within the server's
/// decode limits, and `generator` (when `None`, the one serving once the upload is read).
pub async fn work_on_upload<T, F>(
    app: &AppState,
    upload: Upload,
    generator: Option<Arc<Generator>>,
    work: F,
) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Generator, &Upload, DynamicImage) -> Result<T> + Send + 'static,
{
    let generator = generator.unwrap_or_else(|| app.generator());
    let limits = app.limits.decode.clone();
    let done = app
        .inference
        .run(move || {
            let image = decode_pixels(Path::new(&upload.name), &upload.bytes, &limits)?;
            work(&generator, &upload, image)
        })
        .await??;
    Ok(done)
}

/// `GET /api/stats`: the index (records, prompts, images, bytes on disk, the generation served
/// and its watermark), the models loaded, what is missing, and the work pools' counters.
pub async fn stats(State(app): State<Arc<AppState>>) -> ApiResult<Response> {
    let served = app.served();
    let generator = &served.generator;
    let counting = Arc::clone(generator);
    // A backend may ask a server for its counts: not on the async threads.
    let counts = app.search.run(move || counting.index().stats()).await??;
    let index = generator.index();
    let models = generator.models();
    json_response(&json!({
        "index": {
            "dir": index.location().to_string(),
            "backend": counts.backend,
            "bytes": served.index_bytes,
            "generation": served.generation,
            "watermark": served.watermark,
            "records": counts.records,
            "prompts": counts.prompts,
            "images": counts.images,
            "manifest": index.manifest(),
        },
        "models": {
            "text": models.text.name(),
            "image": models.image.as_ref().map(|m| m.name()),
            "tagger": models.tagger.is_some(),
            "captioners": models.captioners.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "vocabulary": models.vocabulary.as_ref().map(|v| v.phrases().len()),
        },
        "missing": generator.missing(),
        "server": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": app.started.elapsed().as_secs(),
            "max_upload_bytes": app.limits.max_upload,
            "timeout_s": app.limits.timeout.as_secs(),
            "pools": {
                "inference": app.inference.stats(),
                "search": app.search.stats(),
                "files": app.files.stats(),
            },
        },
    }))
}

/// Any unknown path: 404.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {method} {}",
        uri.path().chars().take(200).collect::<String>()
    ))
}

/// A known path with the wrong method: 405.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}",
            uri.path().chars().take(200).collect::<String>()
        ),
    )
}
