//! The success envelope and the request id. Every `/v2` answer is
//! `{"data": ..., "signature": {...}, "id": "E6JPP"}`; the 5-character id is
//! also the `x-request-id` header and a field of every log line of the request.
//! The bodies are serialized from the same structs the OpenAPI document
//! describes, so the two cannot drift apart.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;

tokio::task_local! {
    static REQUEST_ID: String;
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn new_request_id() -> String {
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| char::from(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())]))
        .collect()
}

/// The current request's id (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Gives the request an id, a span carrying it, and the `x-request-id` header.
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = new_request_id();
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            let started = std::time::Instant::now();
            let response = next.run(request).await;
            tracing::debug!(
                status = response.status().as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request done"
            );
            response
        })
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// `data` in the success envelope.
pub struct Envelope<T>(pub T);

/// A page of a list, with the contract's top-level `pagination`.
pub struct Page<T> {
    pub data: Vec<T>,
    pub page: i64,
    pub limit: i64,
    pub total: i64,
}

/// The success body of one object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success<T> {
    pub data: T,
    pub signature: Signature,
    /// The request id, also the `x-request-id` header.
    #[schema(pattern = "^[A-Z0-9]{5}$")]
    pub id: String,
}

/// The success body of a list: one page, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
    pub signature: Signature,
    /// The request id, also the `x-request-id` header.
    #[schema(pattern = "^[A-Z0-9]{5}$")]
    pub id: String,
}

/// Verifik's signature block.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// When the answer was made, e.g. `December 2, 2024 5:05 PM` (UTC).
    pub date_time: String,
    #[schema(example = "Certified by Verifik.co")]
    pub message: String,
}

impl Signature {
    fn now() -> Self {
        Self {
            date_time: chrono::Utc::now().format("%B %-d, %Y %-I:%M %p").to_string(),
            message: "Certified by Verifik.co".into(),
        }
    }
}

/// Where a page is in its list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// 1-based.
    #[schema(minimum = 1)]
    pub page: i64,
    #[schema(minimum = 1, maximum = 100)]
    pub limit: i64,
    /// Matching rows, counted up to 10,000.
    #[schema(minimum = 0)]
    pub total: i64,
    #[schema(minimum = 0)]
    pub pages: i64,
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        Json(Success {
            data: self.0,
            signature: Signature::now(),
            id: current_request_id(),
        })
        .into_response()
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        let pages = if self.total == 0 {
            0
        } else {
            (self.total + self.limit - 1) / self.limit
        };
        Json(List {
            data: self.data,
            pagination: Pagination {
                page: self.page,
                limit: self.limit,
                total: self.total,
                pages,
            },
            signature: Signature::now(),
            id: current_request_id(),
        })
        .into_response()
    }
}
