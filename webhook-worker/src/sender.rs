//! The HTTP call: one signed POST, no redirects, no proxy, a whole-request
//! timeout, at most a few KiB of the answer read. With the SSRF guard on,
//! hostnames resolve through [`GuardedResolver`], so only checked addresses
//! are connected to.

use crate::plan::Attempted;
use crate::ssrf::{self, GuardedResolver};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of a response body is read (then dropped).
const MAX_RESPONSE_BYTES: usize = 4 * 1024;
/// The longest error text kept in a record.
const MAX_ERROR_CHARS: usize = 500;
/// How much of the answer's body is kept for an endpoint's attempt log.
pub const KEPT_RESPONSE_BYTES: usize = 1024;

/// What one request came to.
#[derive(Debug)]
pub struct Call {
    pub result: Attempted,
    pub status: Option<u16>,
    pub latency: Duration,
    /// For the record: what went wrong, without the URL (it may hold a token).
    pub error: Option<String>,
    /// The first KiB of the answer's body (lossy UTF-8), when there was an answer.
    pub response: Option<String>,
}

impl Call {
    /// An attempt that made no request: `error` says why.
    pub fn not_made(result: Attempted, error: String) -> Self {
        Self {
            result,
            status: None,
            latency: Duration::ZERO,
            error: Some(error),
            response: None,
        }
    }
}

/// The signed headers of one attempt.
pub struct Signed<'a> {
    pub id: &'a str,
    pub timestamp: i64,
    pub signature: String,
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool, per_host: usize) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(per_host)
            .pool_idle_timeout(Duration::from_secs(30));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(Self {
            client: builder.build()?,
        })
    }

    /// POSTs `body` to `url` with the Standard Webhooks headers.
    pub async fn post(&self, url: &url::Url, signed: &Signed<'_>, body: Vec<u8>) -> Call {
        let started = Instant::now();
        let sent = self
            .client
            .post(url.clone())
            .headers(headers(signed))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => answered(response, started).await,
            Err(error) => {
                let result = if ssrf::refusal(&error).is_some() {
                    Attempted::Refused
                } else {
                    Attempted::Failed {
                        status: None,
                        retry_after: None,
                    }
                };
                Call {
                    result,
                    status: None,
                    latency: started.elapsed(),
                    error: Some(describe(&error.without_url())),
                    response: None,
                }
            }
        }
    }
}

fn headers(signed: &Signed<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static("otp-webhooks/1"));
    for (name, value) in [
        ("webhook-id", signed.id.to_owned()),
        ("webhook-timestamp", signed.timestamp.to_string()),
        ("webhook-signature", signed.signature.clone()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    headers
}

/// What an answer means; a little of its body is read so the connection
/// can be reused (never more than `MAX_RESPONSE_BYTES`).
async fn answered(mut response: reqwest::Response, started: Instant) -> Call {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(shared::http::parse_retry_after);
    let mut read = 0usize;
    let mut kept = Vec::new();
    let mut body_error = None;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = KEPT_RESPONSE_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(error) => {
                body_error = Some(error);
                break;
            }
        }
    }
    let code = status.as_u16();
    let result = if status.is_success() {
        Attempted::Delivered { status: code }
    } else if status == reqwest::StatusCode::GONE {
        Attempted::Gone
    } else {
        Attempted::Failed {
            status: Some(code),
            retry_after,
        }
    };
    let error = match (&result, body_error) {
        (Attempted::Delivered { .. }, _) => None,
        (_, Some(error)) => Some(describe(&error.without_url())),
        (_, None) => Some(format!("HTTP {code}")),
    };
    Call {
        result,
        status: Some(code),
        latency: started.elapsed(),
        error,
        // PostgreSQL's text holds no NUL.
        response: Some(String::from_utf8_lossy(&kept).replace('\0', "")),
    }
}

/// The error and its causes on one line, cut to a sane length.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}
