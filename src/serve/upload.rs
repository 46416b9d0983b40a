//! Uploaded images: the request body, raw or `multipart/form-data`, read within a size limit
//! and a time limit, then checked to be an image before any decoder sees it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::StreamExt;

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
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > limit as u64 {
            return Err(ApiError::too_large(limit));
        }
    }
    let bytes = match tokio::time::timeout(timeout, read_body(body, limit)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "upload_timeout",
                format!("the upload did not arrive within {} s", timeout.as_secs()),
            ))
        }
    };
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
}
