//! Errors as the API answers them: a status and `{"error": CODE, "detail": TEXT}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An HTTP error: the status, a short stable code for programs, and a sentence for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `bad_request`, `busy`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub detail: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: &'a str,
}

impl ApiError {
    /// An error with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 404: nothing here.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 413: the upload is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the upload is over the limit of {limit} bytes"),
        )
    }

    /// 503 with `Retry-After`: the work queue is full.
    pub fn busy(what: &str, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "the {what} queue is full; retry in {} s",
                    retry_after.max(1)
                ),
            )
        }
    }

    /// 503 with `Retry-After`: the answer took longer than the server allows.
    pub fn timeout(seconds: u64) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("no answer within {seconds} s"),
            )
        }
    }

    /// 500: a bug or a broken index; the detail says which.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl From<Error> for ApiError {
    /// Library errors: bad input is the client's (422 for an unusable image, 400 for a bad
    /// argument); the rest (internal faults, models, index, I/O) is the server's (500).
    fn from(err: Error) -> Self {
        match &err {
            Error::Input { detail, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_image",
                detail.clone(),
            ),
            Error::Invalid(detail) => Self::bad_request(detail.clone()),
            Error::Internal(_) => Self::internal(err.to_string()),
            _ => Self::internal(err.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: self.code,
            detail: &self.detail,
        })
        .unwrap_or_else(|_| br#"{"error":"internal","detail":""}"#.to_vec());
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The content type of every API answer.
pub const JSON: &str = "application/json";

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_carries_retry_after_and_json() {
        let response = ApiError::busy("model", 3).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
    }

    #[test]
    fn library_errors_map_to_statuses() {
        let input = ApiError::from(Error::input("upload", "cannot decode"));
        assert_eq!(input.status, StatusCode::UNPROCESSABLE_ENTITY);
        let invalid = ApiError::from(Error::Invalid("empty".into()));
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
        let index = ApiError::from(Error::index("dir", "broken"));
        assert_eq!(index.status, StatusCode::INTERNAL_SERVER_ERROR);
        let fault = ApiError::from(Error::Internal("cannot resize: short output buffer".into()));
        assert_eq!(fault.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(fault.code, "internal");
    }
}
