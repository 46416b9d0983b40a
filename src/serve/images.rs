//! `GET /api/images/{id}`: an indexed image, or its thumbnail with `?thumb=1`.
//!
//! The request names a record id, never a path: the id must be a plain number, the record
//! must be an image of the index, and the file read is the path the index recorded for it.
//! Thumbnails (JPEG, at most [`THUMB_SIDE`] pixels a side) are kept in a bounded cache.

use std::io::Cursor;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use lru::LruCache;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::query::Query;
use super::AppState;
use crate::ingest::decode_image;
use crate::store::path_from_metadata;
use crate::Result;

/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 320;
/// Largest image file served, in bytes.
pub const MAX_IMAGE_FILE: u64 = 64 << 20;
/// Thumbnails kept in memory (about 20 KB each).
const THUMB_CACHE: NonZeroUsize = NonZeroUsize::new(2048).unwrap();

/// The thumbnail cache: record id -> JPEG bytes, the least recently used dropped first.
pub struct Thumbnails {
    cache: Mutex<LruCache<u64, Bytes>>,
}

impl Default for Thumbnails {
    fn default() -> Self {
        Self::with_capacity(THUMB_CACHE)
    }
}

impl Thumbnails {
    fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The thumbnail of `id`, if cached (it becomes the most recently used).
    fn get(&self, id: u64) -> Option<Bytes> {
        self.cache.lock().ok()?.get(&id).cloned()
    }

    fn put(&self, id: u64, jpeg: Bytes) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(id, jpeg);
        }
    }
}

/// What a lookup found.
enum Found {
    /// The record is not an image of the index (or does not exist).
    NotAnImage,
    /// The index knows the image but its file is gone or unreadable.
    Gone(String),
    /// The bytes to send and their content type.
    Bytes(Bytes, &'static str),
}

/// The record id in `/api/images/{id}`: digits only.
fn parse_id(uri: &Uri) -> ApiResult<u64> {
    let raw = uri.path().rsplit('/').next().unwrap_or_default();
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "an image id is a record number, e.g. /api/images/42",
        ));
    }
    raw.parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", "the id is too large"))
}

/// `GET /api/images/{id}[?thumb=1]`.
pub async fn image(State(app): State<Arc<AppState>>, uri: Uri) -> ApiResult<Response> {
    let id = parse_id(&uri)?;
    let thumb = Query::parse(uri.query())?.flag("thumb", false)?;
    if thumb {
        if let Some(jpeg) = app.thumbnails.get(id) {
            return Ok(image_response(jpeg, "image/jpeg"));
        }
    }
    let worker_app = Arc::clone(&app);
    let found = app
        .files
        .run(move || load(&worker_app, id, thumb))
        .await??;
    match found {
        Found::NotAnImage => Err(ApiError::not_found(format!(
            "record {id} is not an image of this index"
        ))),
        Found::Gone(why) => Err(ApiError::not_found(format!(
            "the file of image {id} cannot be read: {why}"
        ))),
        Found::Bytes(bytes, content_type) => {
            if thumb {
                app.thumbnails.put(id, bytes.clone());
            }
            Ok(image_response(bytes, content_type))
        }
    }
}

fn image_response(bytes: Bytes, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// Finds record `id`, checks it is an image, and reads its file (or makes its thumbnail).
fn load(app: &AppState, id: u64, thumb: bool) -> Result<Found> {
    let Some(Some(record)) = app.generator().index().records(&[id])?.pop() else {
        return Ok(Found::NotAnImage);
    };
    let metadata = record.metadata;
    if metadata.get("kind").and_then(Value::as_str) != Some("image") {
        return Ok(Found::NotAnImage);
    }
    let Some(path) = path_from_metadata(&metadata) else {
        return Ok(Found::NotAnImage);
    };
    let size = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Ok(Found::Gone("not a file".into())),
        Err(e) => return Ok(Found::Gone(e.kind().to_string())),
    };
    if size > MAX_IMAGE_FILE {
        return Ok(Found::Gone(format!("over {MAX_IMAGE_FILE} bytes")));
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Ok(Found::Gone(e.kind().to_string())),
    };
    if !thumb {
        let content_type = image::guess_format(&bytes)
            .map(|f| f.to_mime_type())
            .unwrap_or("application/octet-stream");
        return Ok(Found::Bytes(Bytes::from(bytes), content_type));
    }
    let rgb = decode_image(&path, &bytes, &app.limits.decode)?;
    let small = image::DynamicImage::ImageRgb8(rgb).thumbnail(THUMB_SIDE, THUMB_SIDE);
    let mut jpeg = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 82);
    small
        .to_rgb8()
        .write_with_encoder(encoder)
        .map_err(|e| crate::Error::Internal(format!("thumbnail of image {id}: {e}")))?;
    Ok(Found::Bytes(Bytes::from(jpeg), "image/jpeg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers() {
        let id = |p: &str| parse_id(&p.parse::<Uri>().unwrap());
        assert_eq!(id("/api/images/42").unwrap(), 42);
        assert_eq!(id("/api/images/42?thumb=1").unwrap(), 42);
        for bad in [
            "/api/images/..%2F..%2Fetc%2Fpasswd",
            "/api/images/-1",
            "/api/images/1e3",
            "/api/images/99999999999999999999999",
            "/api/images/",
        ] {
            assert_eq!(id(bad).unwrap_err().code, "bad_id", "{bad}");
        }
    }

    /// A full cache drops the thumbnail used longest ago, not everything.
    #[test]
    fn the_least_recently_used_thumbnail_goes_first() {
        let cache = Thumbnails::with_capacity(NonZeroUsize::new(3).unwrap());
        for id in 1..=3 {
            cache.put(id, Bytes::from(vec![id as u8]));
        }
        assert!(cache.get(1).is_some()); // 2 is now the oldest
        cache.put(4, Bytes::from_static(b"4"));
        assert!(cache.get(2).is_none());
        for id in [1, 3, 4] {
            assert!(cache.get(id).is_some(), "{id}");
        }
    }
}
