//! `rateLimits` of a flow (docs/contract.md §9): creates per value of the body's
//! `ipAddress` per minute and per hour, and the flow's sends per UTC day.
//! Fixed windows in `rate_limit_windows`, shared by every API instance: a
//! create takes one unit of each limit that applies, all or none, under
//! the windows' row locks; a create refused later (cooldown, hourly cap, a
//! block) gives its units back, so refused creates do not count as sends.

use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use shared::domain::RateLimits;
use shared::ObjectId;
use sqlx::PgPool;

/// One limit that applies to a create: its key, window unit and limit.
struct Limit {
    key: String,
    unit: &'static str,
    limit: i32,
}

fn limits(settings: &RateLimits, ip: Option<&str>) -> Vec<Limit> {
    let mut limits = Vec::new();
    let bound = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    if let (Some(ip_limits), Some(ip)) = (&settings.ip_address, ip) {
        if let Some(n) = ip_limits.per_minute {
            limits.push(Limit {
                key: format!("ip:m:{ip}"),
                unit: "minute",
                limit: bound(n),
            });
        }
        if let Some(n) = ip_limits.per_hour {
            limits.push(Limit {
                key: format!("ip:h:{ip}"),
                unit: "hour",
                limit: bound(n),
            });
        }
    }
    if let Some(n) = settings.per_day {
        limits.push(Limit {
            key: "day".to_owned(),
            unit: "day",
            limit: bound(n),
        });
    }
    limits
}

/// Units a create took, to give back if it is refused after all.
#[must_use]
pub struct Taken {
    flow: ObjectId,
    keys: Vec<String>,
}

/// Takes one unit of each limit of `settings` that applies, or answers
/// `429:too_many_requests` with `Retry-After` (the end of the latest window
/// that is full). `None` when no limit applies (no query at all).
pub async fn take(pool: &PgPool, flow: &ObjectId, settings: &RateLimits, ip: Option<&str>) -> ApiResult<Option<Taken>> {
    let limits = limits(settings, ip);
    if limits.is_empty() {
        return Ok(None);
    }
    let keys: Vec<&str> = limits.iter().map(|l| l.key.as_str()).collect();
    let mut tx = pool.begin().await?;
    let taken: Vec<String> = sqlx::query_scalar(
        "INSERT INTO rate_limit_windows AS r (project_flow_id, key, window_start, window_end, count, lim)
         SELECT $1, w.key, date_trunc(w.unit, now(), 'UTC'),
                date_trunc(w.unit, now(), 'UTC') + ('1 ' || w.unit)::interval, 1, w.lim
           FROM unnest($2::text[], $3::text[], $4::int[]) AS w(key, unit, lim)
          ORDER BY w.key
         ON CONFLICT (project_flow_id, key, window_start) DO UPDATE
            SET count = r.count + 1, lim = excluded.lim
          WHERE r.count < excluded.lim
         RETURNING key",
    )
    .bind(flow)
    .bind(&keys)
    .bind(limits.iter().map(|l| l.unit).collect::<Vec<_>>())
    .bind(limits.iter().map(|l| l.limit).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    if taken.len() == limits.len() {
        tx.commit().await?;
        return Ok(Some(Taken {
            flow: flow.clone(),
            keys: taken,
        }));
    }
    drop(tx);
    let full: Vec<&str> = keys.iter().copied().filter(|k| !taken.iter().any(|t| t == k)).collect();
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(window_end) - now())::float8 FROM rate_limit_windows
          WHERE project_flow_id = $1 AND key = ANY($2) AND window_end > now() AND count >= lim",
    )
    .bind(flow)
    .bind(&full)
    .fetch_one(pool)
    .await?;
    let seconds = wait.unwrap_or(1.0).ceil().max(1.0) as u64;
    metrics::counter!("rate_limited_total", "limit" => if full.contains(&"day") { "per_day" } else { "ip_address" })
        .increment(1);
    Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests").with_retry_after(seconds))
}

/// Gives back the units of a create that was refused after taking them.
pub async fn give_back(pool: &PgPool, taken: Taken) {
    let result = sqlx::query(
        "UPDATE rate_limit_windows SET count = count - 1
          WHERE project_flow_id = $1 AND key = ANY($2) AND count > 0
            AND window_start = (SELECT max(window_start) FROM rate_limit_windows w
                                 WHERE w.project_flow_id = $1 AND w.key = rate_limit_windows.key)",
    )
    .bind(&taken.flow)
    .bind(&taken.keys)
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not give back rate-limit units of a refused create");
    }
}
