//! The API's errors and the contract's error envelope:
//! `{"code": "NotFound", "message": "404:projectFlow_not_found"}`.
//! Client errors carry a stable token; everything else is logged with its
//! cause chain and answered as an opaque 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client error with its contract token.
    #[error("{status}:{token}")]
    Client {
        status: StatusCode,
        token: Cow<'static, str>,
        /// Seconds for a `Retry-After` header.
        retry_after: Option<u64>,
    },
    /// Required fields are absent (Verifik's `409 MissingParameter`).
    #[error("missing parameters: {0:?}")]
    Missing(Vec<&'static str>),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, token: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Client {
            status,
            token: token.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(token: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, token)
    }

    /// `400:invalid_<field>`.
    pub fn invalid(field: &str) -> Self {
        Self::bad_request(format!("invalid_{field}"))
    }

    /// `404:<resource>_not_found`.
    pub fn not_found(resource: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{resource}_not_found"))
    }

    pub fn conflict(token: &'static str) -> Self {
        Self::new(StatusCode::CONFLICT, token)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token")
    }

    pub fn with_retry_after(self, seconds: u64) -> Self {
        match self {
            ApiError::Client { status, token, .. } => ApiError::Client {
                status,
                token,
                retry_after: Some(seconds.max(1)),
            },
            other => other,
        }
    }
}

/// The reason phrase in PascalCase: `Not Found` → `NotFound`.
pub fn code_for(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("Error")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect()
}

pub fn envelope(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(serde_json::json!({ "code": code, "message": message }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client {
                status,
                token,
                retry_after,
            } => {
                let mut response = envelope(status, &code_for(status), format!("{}:{token}", status.as_u16()));
                if let Some(seconds) = retry_after {
                    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                }
                response
            }
            ApiError::Missing(fields) => {
                let list: Vec<String> = fields.iter().map(|f| format!("missing {f}")).collect();
                envelope(
                    StatusCode::CONFLICT,
                    "MissingParameter",
                    format!("409:{}", list.join(", ")),
                )
            }
            ApiError::Database(sqlx::Error::PoolTimedOut) => {
                tracing::error!("database pool exhausted");
                envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "503:service_unavailable".into(),
                )
            }
            ApiError::Database(error) => {
                tracing::error!(error = %error, cause = ?error, "database error");
                internal()
            }
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                internal()
            }
        }
    }
}

fn internal() -> Response {
    envelope(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "500:internal_error".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pascal_case_reason_phrases() {
        assert_eq!(code_for(StatusCode::NOT_FOUND), "NotFound");
        assert_eq!(code_for(StatusCode::PRECONDITION_FAILED), "PreconditionFailed");
        assert_eq!(code_for(StatusCode::PAYLOAD_TOO_LARGE), "PayloadTooLarge");
        assert_eq!(code_for(StatusCode::TOO_MANY_REQUESTS), "TooManyRequests");
        assert_eq!(code_for(StatusCode::UNPROCESSABLE_ENTITY), "UnprocessableEntity");
    }
}
