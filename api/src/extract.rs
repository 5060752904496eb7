//! Request extractors that answer bad input in the contract's envelope:
//! the body (within its limit and deadline), a JSON body whose failures name
//! the field, path ids, and the phone fields clients send.

use crate::error::ApiError;
use crate::serve::BodyTimedOut;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shared::domain::{CountryCode, PhoneNumber};
use shared::ObjectId;
use std::convert::Infallible;
use std::error::Error;

/// The largest body accepted (`413:payload_too_large` above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Refuses a request whose declared `Content-Length` is over the limit at
/// once, before its body arrives (a middleware over the whole router).
pub async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return ApiError::payload_too_large().into_response();
    }
    next.run(request).await
}

/// The raw body: `413:payload_too_large` over the limit,
/// `408:request_timeout` when it stops arriving, `400:invalid_body` when the
/// client breaks it off.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(ApiBytes)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large()
                } else if caused_by::<BodyTimedOut>(&rejection) {
                    ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout")
                } else {
                    ApiError::bad_request("invalid_body")
                }
            })
    }
}

/// Whether `error` or one of its causes is an `E`.
fn caused_by<E: Error + 'static>(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<E>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// A JSON body. Malformed JSON is `400:invalid_json`; a field of the wrong
/// type or with an unknown value, or a string holding a NUL character
/// (PostgreSQL stores none), is `400:invalid_<field>`, naming the deepest
/// field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiBytes(bytes) = ApiBytes::from_request(request, state).await?;
        // Every body of the API is an object. serde's derived structs also
        // accept an array of their fields in order (`[null, null]`), which
        // no client means: refuse it as the JSON it is not.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request("invalid_json"));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Objects whose keys are the client's own (not field names): an error
/// inside one names the object.
const FREE_FORM: &[&str] = &["extraParams", "testNumbers", "templates"];

/// The field an error at `path` (object keys, outermost first) is about:
/// the deepest key that is a field name, not descending into free-form objects.
pub(crate) fn field_of<'a>(path: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut field = None;
    for key in path {
        let is_name = key.len() <= 64
            && key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            break;
        }
        field = Some(key);
        if FREE_FORM.contains(&key) {
            break;
        }
    }
    field
}

/// Deserializes `bytes`, naming the deepest field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        if !error.inner().is_data() {
            return ApiError::bad_request("invalid_json");
        }
        let keys: Vec<&str> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        match field_of(keys.iter().copied()) {
            Some(field) => ApiError::invalid(field),
            None if keys.is_empty() => ApiError::bad_request("invalid_json"),
            None => ApiError::bad_request("invalid_body"),
        }
    })?;
    deserializer.end().map_err(|_| ApiError::bad_request("invalid_json"))?;
    refuse_nul(bytes)?;
    Ok(value)
}

/// PostgreSQL refuses NUL in text and jsonb: a body with one in any string
/// (or object key) is refused, naming the deepest field that holds it.
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    // A NUL can only come escaped (`\u0000`); most bodies have no such text.
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("invalid_json"))?;
    let mut path = Vec::new();
    if !find_nul(&value, &mut path) {
        return Ok(());
    }
    match field_of(path.iter().map(String::as_str)) {
        Some(field) => Err(ApiError::invalid(field)),
        None => Err(ApiError::bad_request("invalid_body")),
    }
}

/// Depth-first: whether `value` holds a NUL; `path` is then the keys down
/// to it (a NUL in a key stops at the object holding it).
fn find_nul(value: &serde_json::Value, path: &mut Vec<String>) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(|item| find_nul(item, path)),
        serde_json::Value::Object(map) => map.iter().any(|(key, item)| {
            if key.contains('\0') {
                return true;
            }
            path.push(key.clone());
            let found = find_nul(item, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    }
}

/// A path's `{id}` as sent. One that is not valid UTF-8 is the empty
/// string, which no resource has, so it is simply not found (`path_id`).
pub struct RawPathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RawPathId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let id = Path::<String>::from_request_parts(parts, state).await;
        Ok(RawPathId(id.map(|Path(id)| id).unwrap_or_default()))
    }
}

/// A path id: anything that is not an ObjectId is simply not found.
pub fn path_id(raw: &str, resource: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse(raw).map_err(|_| ApiError::not_found(resource))
}

/// A field clients send as a JSON string or number (`phone`, `otp`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StringOrNumber {
    String(String),
    Number(u64),
}

impl StringOrNumber {
    pub fn into_string(self) -> String {
        match self {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }
    }
}

/// Parses `countryCode` and `phone` into a number possible for its country.
pub fn parse_phone(country_code: &str, phone: &str) -> Result<PhoneNumber, ApiError> {
    let country = CountryCode::parse(country_code).map_err(|_| ApiError::invalid("countryCode"))?;
    PhoneNumber::parse(country, phone).map_err(|_| ApiError::invalid("phone"))
}

/// Checks an optional string's length (in characters).
pub fn check_len(value: &Option<String>, field: &str, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::invalid(field)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        country_code: Option<String>,
        demo: Option<bool>,
    }

    fn token(result: Result<Body, ApiError>) -> String {
        match result {
            Err(ApiError::Client { token, .. }) => token.into_owned(),
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(token(parse_json(b"{\"countryCode\": 507}")), "invalid_countryCode");
        assert_eq!(token(parse_json(b"{\"demo\": \"yes\"}")), "invalid_demo");
        assert_eq!(token(parse_json(b"{\"demo\": tru")), "invalid_json");
        assert_eq!(token(parse_json(b"[1,2]")), "invalid_json");
        assert_eq!(token(parse_json(b"{} {}")), "invalid_json");
        assert!(parse_json::<Body>(b"{\"countryCode\": \"+507\", \"other\": 1}").is_ok());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Nested {
        phone: Option<Inner>,
        extra_params: Option<serde_json::Map<String, serde_json::Value>>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Inner {
        otp_length: Option<u8>,
        test_numbers: Option<std::collections::BTreeMap<String, String>>,
        limits: Option<Vec<Inner>>,
    }

    fn nested(json: &str) -> String {
        match parse_json::<Nested>(json.as_bytes()) {
            Err(ApiError::Client { token, .. }) => token.into_owned(),
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_deepest_field_but_never_a_clients_own_key() {
        assert_eq!(nested(r#"{"phone": {"otpLength": -1}}"#), "invalid_otpLength");
        assert_eq!(
            nested(r#"{"phone": {"limits": [{}, {"otpLength": 1.5}]}}"#),
            "invalid_otpLength"
        );
        assert_eq!(
            nested(r#"{"phone": {"testNumbers": {"+507": 1}}}"#),
            "invalid_testNumbers"
        );
        assert_eq!(nested(r#"{"phone": "x"}"#), "invalid_phone");
    }

    #[test]
    fn nul_characters_are_refused_where_they_are() {
        assert_eq!(
            nested(r#"{"extraParams": {"a": {"b": ["\u0000"]}}}"#),
            "invalid_extraParams"
        );
        assert_eq!(nested(r#"{"extraParams": {"a\u0000": 1}}"#), "invalid_extraParams");
        assert_eq!(
            nested(r#"{"phone": {"testNumbers": {"+507": "1\u0000"}}}"#),
            "invalid_testNumbers"
        );
        assert_eq!(nested(r#"{"unknown": "\u0000"}"#), "invalid_unknown");
        assert!(parse_json::<Nested>(br#"{"extraParams": {"path": "C:\\u0000"}}"#).is_ok());
    }
}
