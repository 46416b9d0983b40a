//! The AUTOMATIC1111 web UI's API, the part about prompts, so that its clients (bots, editor
//! plugins, the PyPI client `webuiapi`) work against promptdex unchanged:
//!
//! | route | request | answer |
//! |---|---|---|
//! | `POST /sdapi/v1/interrogate` | `{"image": BASE64, "model": "clip"}` | `{"caption": PROMPT}` |
//! | `POST /sdapi/v1/png-info` | `{"image": BASE64}` | `{"info": TEXT, "items": {...}, "parameters": {...}}` |
//! | `GET /sdapi/v1/interrogators` | | `[{"name", "mode", "description"}]` |
//!
//! Followed: A1111's `modules/api/api.py` (`interrogateapi`, `pnginfoapi`) and `models.py`
//! (`InterrogateRequest`: `image`, `model` defaulting to `"clip"`), and `webuiapi` 0.9.17's
//! `interrogate` and `png_info`, which send the image as a `data:image/png;base64,` URL.
//!
//! - `interrogate` with `model` `"clip"` answers promptdex's generated prompt in fast mode,
//!   `"clip-classic"` in classic mode (one medium, artist, movement and trending phrase before
//!   flavours, as CLIP Interrogator's classic mode); it reads the pixels only, never a prompt
//!   stored in the file, as A1111 does. Another model is `404` "Model not found", A1111's own
//!   answer (its `deepdanbooru` tagger is not offered).
//! - `png-info`: `info` is the file's own `parameters` text when it holds A1111's, otherwise
//!   the prompt of whichever front-end wrote the file (ComfyUI, InvokeAI, NovelAI, Fooocus,
//!   EXIF, stealth pixels, …) written in A1111's layout ([`to_infotext`]); `items` are the
//!   file's other PNG text chunks; `parameters` are `info`'s fields under A1111's names
//!   ([`infotext_fields`]).
//!
//! Deliberate differences, each for safety or clarity: an `image` that is a URL is refused
//! (A1111 may fetch it; this server fetches nothing); bad input is a `4xx` with promptdex's
//! `{"error", "detail"}` JSON (A1111 answers `500` for undecodable images, and `200` with an
//! empty `info` for an empty `png-info` image); the UI defaults A1111 adds to `parameters` for
//! settings the text lacks are left out.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::{json_response, work_on_upload};
use super::error::{ApiError, ApiResult};
use super::upload::{image_from_base64, json_limit, read_json, Upload};
use super::AppState;
use crate::generate::{Exclude, ModifierMode};
use crate::ingest::{
    decode_pixels, infotext_fields, png_text_chunks, read_metadata_bytes, to_infotext,
    DecodeLimits, Provenance,
};
use crate::Result;

/// An interrogator offered: A1111's model name, the modifier mode (and its `--mode` name),
/// what it answers.
struct Interrogator {
    name: &'static str,
    mode: ModifierMode,
    mode_name: &'static str,
    description: &'static str,
}

/// The interrogators offered.
const INTERROGATORS: [Interrogator; 2] = [
    Interrogator {
        name: "clip",
        mode: ModifierMode::Fast,
        mode_name: "fast",
        description: "promptdex's generated prompt: captions, neighbours' and corpus prompts, \
                      modifiers",
    },
    Interrogator {
        name: "clip-classic",
        mode: ModifierMode::Classic,
        mode_name: "classic",
        description: "the same with one medium, artist, movement and trending phrase before \
                      flavours",
    },
];

/// `InterrogateRequest`.
#[derive(Debug, Deserialize)]
struct Interrogate {
    image: Option<String>,
    #[serde(default = "default_model")]
    model: String,
}

fn default_model() -> String {
    "clip".to_string()
}

/// `PNGInfoRequest`.
#[derive(Debug, Deserialize)]
struct PngInfo {
    image: Option<String>,
}

/// `POST /sdapi/v1/interrogate`: the prompt for the image, as `{"caption": TEXT}`.
pub async fn interrogate(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let request: Interrogate = request_body(&app, &headers, body).await?;
    let upload = image_from_base64(request.image.as_deref(), "image", app.limits.max_upload)?;
    let mode = INTERROGATORS
        .iter()
        .find(|i| i.name == request.model)
        .map(|i| i.mode)
        .ok_or_else(|| ApiError::not_found("Model not found"))?;
    let prompt = work_on_upload(&app, upload, None, move |generator, _, image| {
        let generated = generator.generate_in(mode, &image.into_rgb8(), None, &Exclude::none())?;
        Ok(generated.prompt)
    })
    .await?;
    json_response(&json!({ "caption": prompt }))
}

/// `POST /sdapi/v1/png-info`: the image's generation parameters in A1111's form.
pub async fn png_info(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let request: PngInfo = request_body(&app, &headers, body).await?;
    let upload = image_from_base64(request.image.as_deref(), "image", app.limits.max_upload)?;
    let decode = app.limits.decode.clone();
    let answer = app.files.run(move || info_of(&upload, &decode)).await??;
    json_response(&answer)
}

/// `GET /sdapi/v1/interrogators`: the `model` names `interrogate` takes.
pub async fn interrogators() -> ApiResult<Response> {
    let list: Vec<Value> = INTERROGATORS
        .iter()
        .map(|i| json!({"name": i.name, "mode": i.mode_name, "description": i.description}))
        .collect();
    json_response(&list)
}

/// The request's JSON body, up to the size that carries an image of the upload limit.
async fn request_body<T: DeserializeOwned>(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<T> {
    let limits = &app.limits;
    read_json(headers, body, json_limit(limits.max_upload), limits.timeout).await
}

/// `png-info`'s answer for one image.
fn info_of(upload: &Upload, limits: &DecodeLimits) -> Result<Value> {
    let path = Path::new(&upload.name);
    let chunks = png_text_chunks(&upload.bytes);
    let mut read = read_metadata_bytes(&upload.name, &upload.bytes);
    if read.prompt.is_none() {
        // Stealth text in the pixels, as `index` reads it.
        let pixels = decode_pixels(path, &upload.bytes, limits)?;
        read.fill_from_pixels(path, &pixels);
    }
    let own = chunks
        .iter()
        .find(|(keyword, _)| keyword == "parameters")
        .filter(|_| {
            read.prompt
                .as_ref()
                .is_some_and(|p| p.provenance == Provenance::A1111Parameters)
        })
        .map(|(_, text)| text.clone());
    let info = own
        .or_else(|| read.prompt.as_ref().map(to_infotext))
        .unwrap_or_default();
    let items: Map<String, Value> = chunks
        .into_iter()
        .filter(|(keyword, _)| keyword != "parameters")
        .map(|(keyword, text)| (keyword, Value::String(text)))
        .collect();
    Ok(json!({
        "info": info,
        "items": items,
        "parameters": infotext_fields(&info),
    }))
}
