//! The fixed windows of a flow's `rateLimits` in `rate_limit_windows`
//! (docs/contract.md §9), shared by the API (a create takes a unit of each
//! limit that applies; `next-channel` checks the day) and the dispatcher (a
//! workflow's later step takes a unit of the flow's `perDay`). A window's
//! row is locked while a unit is taken, so any number of processes count
//! one budget.

use crate::ObjectId;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// The key of the flow's `perDay` window.
pub const DAY: &str = "day";

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
const DAY_FULL: &str = "SELECT extract(epoch FROM window_end - now())::float8 FROM rate_limit_windows
          WHERE project_flow_id = $1 AND key = 'day' AND window_start = date_trunc('day', now(), 'UTC')
            AND count >= $2";
const GIVE_BACK: &str = "UPDATE rate_limit_windows r SET count = r.count - 1
           FROM unnest($2::text[], $3::timestamptz[]) AS t(key, window_start)
          WHERE r.project_flow_id = $1 AND r.key = t.key AND r.window_start = t.window_start AND r.count > 0";

/// One limit: its key, window unit (`minute`, `hour`, `day`) and limit.
pub struct Limit {
    pub key: String,
    pub unit: &'static str,
    pub limit: i32,
}

impl Limit {
    /// The flow's `perDay`.
    pub fn per_day(limit: u32) -> Self {
        Self {
            key: DAY.to_owned(),
            unit: "day",
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
        }
    }
}

/// Takes one unit of each of `limits` that has one left; the keys taken and
/// the start of the window each was taken from (the caller commits only if
/// every limit gave one).
pub async fn take(
    conn: impl PgExecutor<'_>,
    flow: &ObjectId,
    limits: &[Limit],
) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(TAKE)
        .bind(flow)
        .bind(limits.iter().map(|l| l.key.as_str()).collect::<Vec<_>>())
        .bind(limits.iter().map(|l| l.unit).collect::<Vec<_>>())
        .bind(limits.iter().map(|l| l.limit).collect::<Vec<_>>())
        .fetch_all(conn)
        .await
}

/// Whole seconds (at least 1) until the latest of the full windows among
/// `keys` ends.
pub async fn wait(conn: impl PgExecutor<'_>, flow: &ObjectId, keys: &[&str]) -> Result<u64, sqlx::Error> {
    let wait: Option<f64> = sqlx::query_scalar(WAIT).bind(flow).bind(keys).fetch_one(conn).await?;
    Ok(wait.unwrap_or(1.0).ceil().max(1.0) as u64)
}

/// Whether today's window of the flow's `perDay` (`per_day` units, as the
/// flow says now) is used up: the seconds until it ends, if so.
pub async fn day_full(conn: impl PgExecutor<'_>, flow: &ObjectId, per_day: u32) -> Result<Option<u64>, sqlx::Error> {
    let wait: Option<f64> = sqlx::query_scalar(DAY_FULL)
        .bind(flow)
        .bind(i32::try_from(per_day).unwrap_or(i32::MAX))
        .fetch_optional(conn)
        .await?;
    Ok(wait.map(|w| w.ceil().max(1.0) as u64))
}

/// Gives units back to the windows (`keys`, `windows`: as [`take`] returned
/// them) they were taken from.
pub async fn give_back(
    conn: impl PgExecutor<'_>,
    flow: &ObjectId,
    keys: &[String],
    windows: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(GIVE_BACK)
        .bind(flow)
        .bind(keys)
        .bind(windows)
        .execute(conn)
        .await?;
    Ok(())
}

/// The windows' statements, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        ("rate_limits.take", TAKE),
        ("rate_limits.wait", WAIT),
        ("rate_limits.day_full", DAY_FULL),
        ("rate_limits.give_back", GIVE_BACK),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
