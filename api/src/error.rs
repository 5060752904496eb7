//! The API's errors and the contract's error envelope:
//! `{"code": "NotFound", "message": "404:projectFlow_not_found"}`.
//! Client errors carry a stable token; everything else is logged with its
//! cause chain and answered as an opaque 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::borrow::Cow;
use utoipa::ToSchema;

/// The error envelope, as every error answer carries it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The status's reason phrase in PascalCase (`NotFound`), or
    /// `MissingParameter` (409) for absent required fields.
    #[schema(example = "NotFound")]
    pub code: String,
    /// `<status>:<token>`, e.g. `404:projectFlow_not_found`, or
    /// `409:missing phone, missing countryCode`.
    #[schema(example = "404:projectFlow_not_found", pattern = "^[1-5][0-9]{2}:")]
    pub message: String,
}

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

    /// `413:payload_too_large`.
    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
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
    let mut response = (
        status,
        Json(ErrorBody {
            code: code.to_owned(),
            message,
        }),
    )
        .into_response();
    // Refused before its body was read whole: what is left of the body
    // would be read as the next request, so the connection ends here.
    if matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
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
                log_database_error(&error);
                internal()
            }
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                internal()
            }
        }
    }
}

/// Logs a database error by what identifies it (PostgreSQL's code, its
/// constraint and table), never by its message or detail, which can quote
/// row values: `Key (phone)=(+507…) already exists`.
fn log_database_error(error: &sqlx::Error) {
    match error {
        sqlx::Error::Database(database) => tracing::error!(
            code = database.code().as_deref(),
            constraint = database.constraint(),
            table = database.table(),
            kind = ?database.kind(),
            "database error"
        ),
        // A value that did not decode or encode can be quoted by the error.
        sqlx::Error::ColumnDecode { index, .. } => {
            tracing::error!(column = %index, "database error: a column did not decode")
        }
        sqlx::Error::Decode(_) => tracing::error!("database error: a value did not decode"),
        sqlx::Error::Encode(_) => tracing::error!("database error: a value did not encode"),
        // The rest say what failed (connection, pool, protocol), not what was stored.
        other => tracing::error!(error = %other, "database error"),
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
        assert_eq!(code_for(StatusCode::REQUEST_TIMEOUT), "RequestTimeout");
    }

    #[test]
    fn refusals_before_the_body_is_read_close_the_connection() {
        let refused = ApiError::payload_too_large().into_response();
        assert_eq!(refused.headers().get(header::CONNECTION).unwrap(), "close");
        let other = ApiError::invalid("name").into_response();
        assert!(other.headers().get(header::CONNECTION).is_none());
    }
}
