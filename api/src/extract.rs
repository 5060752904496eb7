//! Request extractors that answer bad input in the contract's envelope:
//! a JSON body whose failures name the field, list queries, and path ids.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use shared::ObjectId;

/// The largest body accepted (`413:payload_too_large` above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. Malformed JSON is `400:invalid_json`; a field of the wrong
/// type or with an unknown value is `400:invalid_<field>`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            } else {
                ApiError::bad_request("invalid_body")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, naming the first field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if !inner.is_data() {
            return ApiError::bad_request("invalid_json");
        }
        let field = error.path().iter().find_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        match field {
            Some(field) if field.len() <= 64 && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                ApiError::invalid(&field)
            }
            Some(_) => ApiError::bad_request("invalid_body"),
            None => ApiError::bad_request("invalid_json"),
        }
    })?;
    deserializer.end().map_err(|_| ApiError::bad_request("invalid_json"))?;
    Ok(value)
}

/// A path id: anything that is not an ObjectId is simply not found.
pub fn path_id(raw: &str, resource: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse(raw).map_err(|_| ApiError::not_found(resource))
}

/// `page` (1-based) and `limit` (1..=100) of a list request.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    pub page: i64,
    pub limit: i64,
}

impl Paging {
    pub fn offset(self) -> i64 {
        (self.page - 1) * self.limit
    }
}

/// The decoded query string of a list request.
pub struct ListQuery(pub Vec<(String, String)>);

impl ListQuery {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The value of `name`, `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn paging(&self) -> Result<Paging, ApiError> {
        let number = |name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
            match self.get(name) {
                None => Ok(default),
                Some(raw) => raw
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| ApiError::invalid(name)),
            }
        };
        Ok(Paging {
            page: number("page", 1, 1_000_000)?,
            limit: number("limit", 10, 100)?,
        })
    }

    /// An optional id filter; a malformed id is `400:invalid_<name>`.
    pub fn id(&self, name: &str) -> Result<Option<ObjectId>, ApiError> {
        self.get(name)
            .map(|raw| ObjectId::parse(raw).map_err(|_| ApiError::invalid(name)))
            .transpose()
    }

    /// An optional enum filter; an unknown value is `400:invalid_<name>`.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|raw| raw.parse().map_err(|_| ApiError::invalid(name)))
            .transpose()
    }
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

    #[test]
    fn paging_is_bounded() {
        assert!(ListQuery::parse(Some("limit=100000")).paging().is_err());
        assert!(ListQuery::parse(Some("page=0")).paging().is_err());
        let paging = ListQuery::parse(Some("page=3&limit=20")).paging().unwrap();
        assert_eq!((paging.page, paging.limit, paging.offset()), (3, 20, 40));
    }
}
