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
use shared::store::rate_limits::{self as windows, Limit};
use shared::ObjectId;
use sqlx::PgPool;
use std::net::IpAddr;

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
        limits.push(Limit::per_day(n));
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
    let taken = windows::take(&mut *tx, flow, &limits).await?;
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
    let seconds = windows::wait(pool, flow, &full).await?;
    let limit = if full.contains(&windows::DAY) {
        "per_day"
    } else {
        "ip_address"
    };
    Err(too_many_requests(limit, seconds))
}

/// `429:too_many_requests`, `Retry-After` the window's end, counted under
/// `rate_limited_total{limit}`.
pub fn too_many_requests(limit: &'static str, seconds: u64) -> ApiError {
    metrics::counter!("rate_limited_total", "limit" => limit).increment(1);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests").with_retry_after(seconds)
}

/// Gives back the units of a create that was refused after taking them, to
/// the windows they were taken from (a window that has ended meanwhile gets
/// its unit back too, harmlessly: it counts nothing any more).
pub async fn give_back(pool: &PgPool, taken: Taken) {
    let result = windows::give_back(pool, &taken.flow, &taken.keys, &taken.windows).await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not give back rate-limit units of a refused create");
    }
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
