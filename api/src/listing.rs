//! A list request: its query string (`ListQuery`, each parameter once) and
//! its page (`Paging`). The stores read the page (`store::list`), newest
//! first, scoped to the client.
//!
//! Lists are bounded: `total` counts at most `MAX_COUNTED` rows (a count of
//! millions would cost more than the page itself), and a page reaches only
//! those: one that starts past them is empty (without scanning the rows an
//! `OFFSET` that deep would skip); narrower filters reach the rest.

use crate::error::ApiError;
use crate::extract::field_of;
use shared::ObjectId;

/// The most rows a list counts, and how deep a page may start.
pub const MAX_COUNTED: i64 = 10_000;

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

/// The paging parameters of every list, as the OpenAPI document shows
/// them (`params(PagingParams)`); read by [`ListQuery::paging`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description for the document, never built
pub struct PagingParams {
    /// 1-based; a list reaches its first 10,000 rows (a page past them is empty)
    #[param(minimum = 1, maximum = 10000)]
    page: Option<i64>,
    /// Rows per page (default 10)
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// The decoded query string of a list request: each parameter at most once.
pub struct ListQuery(Vec<(String, String)>);

impl ListQuery {
    /// A parameter given twice (`?page=1&page=2`) is `400:invalid_<name>`:
    /// which one the client meant is a guess, and the OpenAPI document
    /// declares every parameter as one value.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned() {
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(match field_of([key.as_str()]) {
                    Some(field) => ApiError::invalid(field),
                    None => ApiError::bad_request("invalid_query"),
                });
            }
            pairs.push((key, value));
        }
        Ok(Self(pairs))
    }

    /// The value of `name`, `None` when absent or empty (the contract's
    /// lists spell "no filter" as `?project=&status=`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
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
            // No page starts past the rows a list counts (`MAX_COUNTED`).
            page: number("page", 1, MAX_COUNTED)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_is_bounded() {
        let paging = |raw| ListQuery::parse(Some(raw)).and_then(|query| query.paging());
        assert!(paging("limit=100000").is_err());
        assert!(paging("page=0").is_err());
        assert!(paging("page=10001").is_err());
        let paging = paging("page=3&limit=20").unwrap();
        assert_eq!((paging.page, paging.limit, paging.offset()), (3, 20, 40));
    }

    #[test]
    fn a_parameter_given_twice_is_refused_and_an_empty_one_is_absent() {
        let refused = |raw| match ListQuery::parse(Some(raw)) {
            Err(ApiError::Client { token, .. }) => token.into_owned(),
            Err(other) => panic!("{raw}: {other:?}"),
            Ok(_) => panic!("{raw}: accepted"),
        };
        assert_eq!(refused("page=1&page=2"), "invalid_page");
        assert_eq!(refused("page=1&limit=5&page=1"), "invalid_page");
        assert_eq!(refused("project=&project="), "invalid_project");
        assert_eq!(refused("%00=1&%00=2"), "invalid_query");
        let query = ListQuery::parse(Some("project=&limit=5")).unwrap();
        assert_eq!(query.get("project"), None);
        assert_eq!(query.get("limit"), Some("5"));
    }
}
