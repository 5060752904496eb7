//! `rateLimits` of a flow (docs/contract.md §9): creates per value of the body's
//! `ipAddress` per minute and per hour, and the flow's sends per UTC day.
//! Fixed windows in `rate_limit_windows`, shared by every API instance: a
//! create takes one unit of each limit that applies, all or none, under
//! the windows' row locks; a create refused later (cooldown, hourly cap, a
//! block) gives its units back to the windows it took them from, so refused
//! creates do not count as sends.
//!
//! An address is counted by what it is, not how it was written: the
//! canonical form (`2001:DB8:0::1` is `2001:db8::1`), an IPv4-mapped IPv6
//! address as its IPv4 address, and an IPv6 address by its /64 (a host
//! holds a whole /64 and can rotate through it at will).

use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use shared::domain::RateLimits;
use shared::ObjectId;
use sqlx::PgPool;
use std::net::IpAddr;

const TAKE: &str = "INSERT INTO rate_limit_windows AS r (project_flow_id, key, window_start, window_end, count, lim)
         SELECT $1, w.key, date_trunc(w.unit, now(), 'UTC'),
                date_trunc(w.unit, now(), 'UTC') + ('1 ' || w.unit)::interval, 1, w.lim
           FROM unnest($2::text[], $3::text[], $4::int[]) AS w(key, unit, lim)
          ORDER BY w.key
         ON CONFLICT (project_flow_id, key, window_start) DO UPDATE
            SET count = r.count + 1, lim = excluded.lim
          WHERE r.count < excluded.lim
         RETURNING key, window_start";
const WAIT: &str = "SELECT extract(epoch FROM max(window_end) - now())::float8 FROM rate_limit_windows
          WHERE project_flow_id = $1 AND key = ANY($2) AND window_end > now() AND count >= lim";
const GIVE_BACK: &str = "UPDATE rate_limit_windows r SET count = r.count - 1
           FROM unnest($2::text[], $3::timestamptz[]) AS t(key, window_start)
          WHERE r.project_flow_id = $1 AND r.key = t.key AND r.window_start = t.window_start AND r.count > 0";

/// One limit that applies to a create: its key, window unit and limit.
struct Limit {
    key: String,
    unit: &'static str,
    limit: i32,
}

/// What the `ipAddress` limits count an address as: IPv4 as is, an
/// IPv4-mapped IPv6 address as its IPv4 address, other IPv6 by its /64
/// (`2001:db8:0:1::/64`).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(network))
            }
        },
    }
}

fn limits(settings: &RateLimits, ip: Option<IpAddr>) -> Vec<Limit> {
    let mut limits = Vec::new();
    let bound = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    if let (Some(ip_limits), Some(ip)) = (&settings.ip_address, ip.map(address_key)) {
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

/// Units a create took (each limit's key and the start of the window it
/// was taken from), to give back if it is refused after all.
#[must_use]
pub struct Taken {
    flow: ObjectId,
    keys: Vec<String>,
    windows: Vec<DateTime<Utc>>,
}

/// Takes one unit of each limit of `settings` that applies, or answers
/// `429:too_many_requests` with `Retry-After` (the end of the latest window
/// that is full). `None` when no limit applies (no query at all).
pub async fn take(
    pool: &PgPool,
    flow: &ObjectId,
    settings: &RateLimits,
    ip: Option<IpAddr>,
) -> ApiResult<Option<Taken>> {
    let limits = limits(settings, ip);
    if limits.is_empty() {
        return Ok(None);
    }
    let keys: Vec<&str> = limits.iter().map(|l| l.key.as_str()).collect();
    let mut tx = pool.begin().await?;
    let taken: Vec<(String, DateTime<Utc>)> = sqlx::query_as(TAKE)
        .bind(flow)
        .bind(&keys)
        .bind(limits.iter().map(|l| l.unit).collect::<Vec<_>>())
        .bind(limits.iter().map(|l| l.limit).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    if taken.len() == limits.len() {
        tx.commit().await?;
        let (keys, windows) = taken.into_iter().unzip();
        return Ok(Some(Taken {
            flow: flow.clone(),
            keys,
            windows,
        }));
    }
    drop(tx);
    let full: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !taken.iter().any(|(t, _)| t == k))
        .collect();
    let wait: Option<f64> = sqlx::query_scalar(WAIT).bind(flow).bind(&full).fetch_one(pool).await?;
    let seconds = wait.unwrap_or(1.0).ceil().max(1.0) as u64;
    metrics::counter!("rate_limited_total", "limit" => if full.contains(&"day") { "per_day" } else { "ip_address" })
        .increment(1);
    Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests").with_retry_after(seconds))
}

/// Gives back the units of a create that was refused after taking them, to
/// the windows they were taken from (a window that has ended meanwhile gets
/// its unit back too, harmlessly: it counts nothing any more).
pub async fn give_back(pool: &PgPool, taken: Taken) {
    let result = sqlx::query(GIVE_BACK)
        .bind(&taken.flow)
        .bind(&taken.keys)
        .bind(&taken.windows)
        .execute(pool)
        .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not give back rate-limit units of a refused create");
    }
}

/// The rate limits' statements, for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        ("rate_limits.take", TAKE),
        ("rate_limits.wait", WAIT),
        ("rate_limits.give_back", GIVE_BACK),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> String {
        address_key(raw.parse().unwrap())
    }

    #[test]
    fn one_address_is_one_key_however_it_is_written() {
        assert_eq!(key("2001:db8::1"), "2001:db8::/64");
        assert_eq!(key("2001:DB8::1"), "2001:db8::/64");
        assert_eq!(key("2001:db8:0::1"), "2001:db8::/64");
        assert_eq!(key("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::/64");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        assert_eq!(key("2001:db8:0:1:aaaa:bbbb:cccc:dddd"), "2001:db8:0:1::/64");
        assert_eq!(key("2001:db8:0:1::2"), "2001:db8:0:1::/64");
        assert_ne!(
            key("2001:db8:0:2::1"),
            key("2001:db8:0:1::1"),
            "the next /64 is another host"
        );
    }
}
