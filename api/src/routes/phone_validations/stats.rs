//! `GET /v2/phone-validations/stats` (docs/contract.md §10): conversion by country,
//! prefix, channel, provider or day, from the rollup the write path keeps
//! (`crate::stats`), so the answer costs the groups, not the validations.

use crate::auth::AuthClient;
use crate::envelope::{Envelope, Success};
use crate::error::{ApiError, ApiResult};
use crate::listing::ListQuery;
use crate::state::AppState;
use crate::stats::{self, GroupBy, StatsQuery, StatsRow};
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Duration, Utc};

/// The longest range one request may cover.
const MAX_RANGE_DAYS: i64 = 92;

/// Conversion statistics of the client's validations created in a range,
/// counted by the hour of creation (`from` rounds down to its hour, `to` up).
#[utoipa::path(get, path = "/v2/phone-validations/stats", tag = "phone validations", operation_id = "phoneValidationStats",
    params(
        ("from" = Option<DateTime<Utc>>, Query, description = "RFC 3339; default 24 h before `to`; before `to` (else `invalid_from`)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "RFC 3339; default now; at most 92 days after `from` (else `invalid_to`)"),
        ("groupBy" = Option<GroupBy>, Query, description = "country (default), prefix, channel, provider or day"),
        ("project" = Option<String>, Query, pattern = "^[0-9a-f]{24}$"),
        ("projectFlow" = Option<String>, Query, pattern = "^[0-9a-f]{24}$")),
    responses((status = 200, body = Success<Vec<StatsRow>>),
        (status = 400, description = "`invalid_from`, `invalid_to`, `invalid_groupBy`, `invalid_project`, `invalid_projectFlow`")),
    security(("bearer" = [])))]
pub async fn stats(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Envelope<Vec<StatsRow>>> {
    let query = ListQuery::parse(query.as_deref())?;
    let time = |name: &str| -> ApiResult<Option<DateTime<Utc>>> {
        query
            .get(name)
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| ApiError::invalid(name))
            })
            .transpose()
    };
    let to = time("to")?.unwrap_or_else(Utc::now);
    let from = time("from")?.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::invalid("from"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::invalid("to"));
    }
    let group_by = match query.get("groupBy") {
        None => GroupBy::Country,
        Some(raw) => serde_json::from_value(serde_json::Value::String(raw.to_owned()))
            .map_err(|_| ApiError::invalid("groupBy"))?,
    };
    let request = StatsQuery {
        client,
        from,
        to,
        group_by,
        project: query.id("project")?,
        flow: query.id("projectFlow")?,
    };
    Ok(Envelope(stats::query(&app.pool, &request).await?))
}
