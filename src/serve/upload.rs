//! Uploaded images: the request body, raw or `multipart/form-data`, read within a size limit
//! and a time limit, then checked to be an image before any decoder sees it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};

/// Image bytes from a request.
#[derive(Debug)]
pub struct Upload {
    /// The file name the client gave, or `upload`.
    pub name: String,
    /// The bytes.
    pub bytes: Bytes,
    /// Their format, sniffed from the content.
    pub format: image::ImageFormat,
}

/// Reads the image in a request: the first file of a multipart form (the field named `image`
/// or `file`, else any field with a file name), or else the whole body.
pub async fn read_upload(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> ApiResult<Upload> {
    let bytes = read_limited(headers, body, limit, timeout).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (name, bytes) = if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        first_file(content_type, bytes).await?
    } else {
        ("upload".to_string(), bytes)
    };
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "no image: the request body is empty (send the image as the body, or as the \
             `image` field of a multipart form)",
        ));
    }
    let format = sniff(&bytes)?;
    Ok(Upload {
        name,
        bytes,
        format,
    })
}

/// A JSON request body of at most `limit` bytes, as `T`.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> ApiResult<T> {
    let bytes = read_limited(headers, body, limit, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("the request body is not the JSON expected: {e}"))
    })
}

/// The largest JSON body that can carry a base64 image of `max_upload` bytes, with room for
/// the other fields.
pub fn json_limit(max_upload: usize) -> usize {
    max_upload / 3 * 4 + (64 << 10)
}

/// An image sent as base64 text (A1111's and clip-retrieval's clients do so), with or without a
/// `data:image/...;base64,` prefix; `field` names it in errors. No URL is fetched: the server
/// makes no outbound requests.
pub fn image_from_base64(text: Option<&str>, field: &str, limit: usize) -> ApiResult<Upload> {
    use base64::Engine;
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_image",
            format!("no image: `{field}` is missing or empty (send the image as base64)"),
        ));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(ApiError::bad_request(format!(
            "`{field}` is a URL: this server fetches nothing; send the image as base64"
        )));
    }
    let data = match text.strip_prefix("data:") {
        Some(url) => url.split_once(',').map_or("", |(_, data)| data),
        None => text,
    };
    // Base64 of `limit` bytes is 4/3 as long: refuse before decoding anything larger.
    if data.len() / 4 * 3 > limit + 3 {
        return Err(ApiError::too_large(limit));
    }
    // Line breaks and spaces (some encoders wrap lines) are not part of the data.
    let data: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::bad_request(format!("`{field}` is not valid base64: {e}")))?;
    if bytes.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_image",
            format!("no image: `{field}` decodes to nothing"),
        ));
    }
    let format = sniff(&bytes)?;
    Ok(Upload {
        name: "upload".to_string(),
        bytes: Bytes::from(bytes),
        format,
    })
}

/// The body of a request, refused when its declared length or its bytes pass `limit`, or when
/// it takes longer than `timeout` to arrive.
async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> ApiResult<Bytes> {
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > limit as u64 {
            return Err(ApiError::too_large(limit));
        }
    }
    match tokio::time::timeout(timeout, read_body(body, limit)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "upload_timeout",
            format!("the upload did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

/// The whole body, refusing it as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if buffer.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// The first file in a multipart form.
async fn first_file(content_type: &str, body: Bytes) -> ApiResult<(String, Bytes)> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad_request(format!("bad multipart content type: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::bad_request(format!("bad multipart body: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let is_file = matches!(field.name(), Some("image" | "file")) || field.file_name().is_some();
        if !is_file {
            continue;
        }
        let name = field
            .file_name()
            .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect())
            .unwrap_or_else(|| "upload".to_string());
        let bytes = field.bytes().await.map_err(bad)?;
        return Ok((name, bytes));
    }
    Err(ApiError::bad_request(
        "the multipart form has no file (send it in a field named `image`)",
    ))
}

/// The image format of `bytes` from their signature: PNG, JPEG, WebP or GIF.
fn sniff(bytes: &[u8]) -> ApiResult<image::ImageFormat> {
    use image::ImageFormat::{Gif, Jpeg, Png, WebP};
    match image::guess_format(bytes) {
        Ok(format @ (Png | Jpeg | WebP | Gif)) => Ok(format),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "not a PNG, JPEG, WebP or GIF image (unknown signature)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn read(h: HeaderMap, body: Vec<u8>, limit: usize) -> ApiResult<Upload> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(read_upload(
                &h,
                Body::from(body),
                limit,
                Duration::from_secs(5),
            ))
    }

    const PNG_HEAD: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn raw_and_multipart_bodies() {
        let raw = read(HeaderMap::new(), PNG_HEAD.to_vec(), 100).unwrap();
        assert_eq!(
            (raw.name.as_str(), raw.format),
            ("upload", image::ImageFormat::Png)
        );

        let mut form = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat.png\"\r\n\
            Content-Type: image/png\r\n\r\n"
            .to_vec();
        form.extend_from_slice(PNG_HEAD);
        form.extend_from_slice(b"\r\n--XyZ--\r\n");
        let h = headers(&[("content-type", "multipart/form-data; boundary=XyZ")]);
        let multi = read(h, form, 1000).unwrap();
        assert_eq!(multi.name, "cat.png");
        assert_eq!(&multi.bytes[..], PNG_HEAD);
    }

    #[test]
    fn empty_large_and_non_image_bodies_are_refused() {
        assert_eq!(
            read(HeaderMap::new(), Vec::new(), 10).unwrap_err().code,
            "empty_body"
        );
        let err = read(HeaderMap::new(), vec![0; 101], 100).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let declared = headers(&[("content-length", "5000000000")]);
        assert_eq!(
            read(declared, Vec::new(), 100).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let err = read(HeaderMap::new(), b"hello world".to_vec(), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::{headers, read, PNG_HEAD};
        use crate::serve::fuzz::{config, timed};

        /// One part of a generated form.
        #[derive(Debug, Clone)]
        struct Part {
            name: Option<String>,
            file_name: Option<String>,
            content_type: Option<String>,
            body: Vec<u8>,
        }

        fn part() -> impl Strategy<Value = Part> {
            let name = proptest::option::of(prop_oneof![
                Just("image".to_string()),
                Just("file".to_string()),
                "[a-z]{0,8}",
                "[^\"\r\n]{0,12}",
            ]);
            let file_name = proptest::option::of("[^\"\r\n]{0,30}");
            let content_type =
                proptest::option::of(prop_oneof![Just("image/png".to_string()), "[ -~]{0,30}",]);
            let body = prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::collection::vec(any::<u8>(), 0..300).prop_map(|tail| {
                    let mut png = PNG_HEAD.to_vec();
                    png.extend(tail);
                    png
                }),
            ];
            (name, file_name, content_type, body).prop_map(
                |(name, file_name, content_type, body)| Part {
                    name,
                    file_name,
                    content_type,
                    body,
                },
            )
        }

        /// The body of a `multipart/form-data` request with `parts`, separated by `boundary`.
        fn form(boundary: &str, parts: &[Part]) -> Vec<u8> {
            let mut out = Vec::new();
            for p in parts {
                out.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data").as_bytes(),
                );
                if let Some(name) = &p.name {
                    out.extend_from_slice(format!("; name=\"{name}\"").as_bytes());
                }
                if let Some(file) = &p.file_name {
                    out.extend_from_slice(format!("; filename=\"{file}\"").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                if let Some(ct) = &p.content_type {
                    out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&p.body);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            out
        }

        /// Damage to a well-formed body: cut it short, splice in bytes, or flip one.
        #[derive(Debug, Clone)]
        enum Damage {
            None,
            Truncate(usize),
            Insert(usize, Vec<u8>),
            Flip(usize, u8),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                2 => Just(Damage::None),
                1 => any::<usize>().prop_map(Damage::Truncate),
                1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..20))
                    .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
                1 => (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Damage::Flip(at, x)),
            ]
        }

        fn apply(body: &mut Vec<u8>, damage: &Damage) {
            let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
            match damage {
                Damage::None => {}
                Damage::Truncate(i) => body.truncate(at(*i, body.len())),
                Damage::Insert(i, bytes) => {
                    let i = at(*i, body.len() + 1);
                    body.splice(i..i, bytes.iter().copied());
                }
                Damage::Flip(i, x) => {
                    let i = at(*i, body.len());
                    if let Some(b) = body.get_mut(i) {
                        *b ^= x;
                    }
                }
            }
        }

        /// The part `read_upload` must pick from an intact form: the first named `image` or
        /// `file`, or with a file name.
        fn chosen(parts: &[Part]) -> Option<&Part> {
            parts.iter().find(|p| {
                matches!(p.name.as_deref(), Some("image" | "file")) || p.file_name.is_some()
            })
        }

        proptest! {
            #![proptest_config(config(400))]

            /// Generated forms, intact or damaged, under any size limit: an upload or a 4xx
            /// error, never a panic or a hang; an intact form yields its file part's bytes.
            #[test]
            fn multipart_bodies_are_read_or_refused(
                boundary in "pdx-[A-Za-z0-9'()+_,./:=?-]{1,40}",
                parts in proptest::collection::vec(part(), 0..5),
                damage in damage(),
                limit in prop_oneof![Just(1usize << 20), 0usize..2000],
            ) {
                let mut body = form(&boundary, &parts);
                apply(&mut body, &damage);
                let intact = matches!(damage, Damage::None) && body.len() <= limit;
                // Quoted: the boundary may hold characters a bare parameter value may not.
                let content_type = format!("multipart/form-data; boundary=\"{boundary}\"");
                let h = headers(&[("content-type", &content_type)]);
                let result = timed("a multipart body", || read(h, body, limit));
                match &result {
                    Ok(upload) => prop_assert!(!upload.bytes.is_empty()),
                    Err(e) => prop_assert!(e.status.is_client_error(), "{:?}", e),
                }
                let Some(file) = chosen(&parts).filter(|_| intact) else {
                    return Ok(());
                };
                // A body that happens to hold the boundary line ends its part early, and a
                // name with quotes or separators in it may read as another parameter: the
                // file chosen is then not predicted here.
                let needle = format!("\r\n--{boundary}");
                let plain = |t: &Option<String>| {
                    t.as_deref().unwrap_or_default().chars().all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c))
                };
                let clean = parts.iter().all(|p| {
                    !p.body.windows(needle.len()).any(|w| w == needle.as_bytes())
                        && plain(&p.name)
                        && plain(&p.file_name)
                });
                if clean && file.body.starts_with(PNG_HEAD) {
                    prop_assert_eq!(&result.unwrap().bytes[..], &file.body[..]);
                }
            }

            /// Any bytes under any content type: an upload or a 4xx error.
            #[test]
            fn any_body_under_any_content_type_is_read_or_refused(
                content_type in "[ -~]{0,80}",
                body in proptest::collection::vec(any::<u8>(), 0..600),
            ) {
                let h = headers(&[("content-type", &content_type)]);
                let result = timed("a body", || read(h, body, 1 << 20));
                if let Err(e) = result {
                    prop_assert!(e.status.is_client_error(), "{:?}", e);
                }
            }
        }
    }
}
