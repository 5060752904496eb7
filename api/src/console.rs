//! `GET /console`: the web console (docs/contract.md §15). Its HTML, CSS
//! and JavaScript modules are in `api/console/`, built into the binary (no
//! CDN, no build step), and served under a Content-Security-Policy that
//! allows no inline script or style. The console signs in with a client
//! token kept in the browser's `sessionStorage` and calls only the public
//! `/v2` API, so it can do nothing a client cannot do with `curl`.

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// What every console answer carries: no inline script or style, nothing
/// from another origin, never framed, no referrer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../console/", $name)),
        }
    };
}

/// The page first, then what it loads from `/console/assets/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("validations.js", JS),
    asset!("fraud.js", JS),
    asset!("webhooks.js", JS),
    asset!("messages.js", JS),
    asset!("flows.js", JS),
    asset!("sms.js", JS),
];

/// Each asset's strong ETag: the first 16 bytes of its SHA-256, in hex.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
                .unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

/// `/console` (and `/console/`) and `/console/assets/{name}`.
pub fn router() -> Router {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/assets/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    // The page itself is only served at `/console`.
    match ASSETS.iter().skip(1).position(|asset| asset.name == name) {
        Some(found) => serve(found + 1, &headers),
        None => ApiError::not_found("route").into_response(),
    }
}

/// One asset, or `304` when the browser holds this version already. Every
/// answer is revalidated (`no-cache`), so a new binary's console is seen at
/// once, and costs a `304` otherwise.
fn serve(index: usize, request: &HeaderMap) -> Response {
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag.to_str().unwrap_or_default() || tag.trim() == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_handler() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap_or(0)];
            assert!(tag.contains(" src="), "an inline script: {tag}");
        }
        assert!(!html.contains("style="), "an inline style");
        let lower = html.to_ascii_lowercase();
        for (at, _) in lower.match_indices(" on") {
            let name: String = lower[at + 3..].chars().take_while(char::is_ascii_alphabetic).collect();
            let after = lower[at + 3 + name.len()..].trim_start();
            assert!(
                name.is_empty() || !after.starts_with('='),
                "an inline handler: on{name}"
            );
        }
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap_or_default();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit("\"./").next().unwrap_or_default().trim_end_matches("\";");
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} imports {target}",
                    asset.name
                );
            }
        }
    }
}
