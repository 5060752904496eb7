//! Conversion counts (docs/contract.md §10) and the fraud guard's window, kept by
//! the write path: a trigger on `phone_validations` appends each statement's
//! changes to `validation_stats_deltas` (migration 0013), and [`fold`] moves
//! them into the hourly rollup and the guard's counters (per second). A read
//! adds the deltas not folded yet, so it never lags the records.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ObjectId;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;
use utoipa::ToSchema;

/// Deltas folded per transaction at most (a burst's backlog takes a few).
const FOLD_BATCH: i64 = 50_000;

/// Upper bounds (seconds) of the buckets of time to validate; the same list
/// as the database's `validation_seconds_bounds()`: bucket `i` holds
/// `[BOUNDS[i-1], BOUNDS[i])`, bucket 0 under 5 s, the last one past a day.
pub const BOUNDS: [f64; 19] = [
    5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 450.0, 600.0, 900.0, 1800.0, 3600.0,
    7200.0, 86400.0,
];

static FOLD: LazyLock<String> = LazyLock::new(|| {
    let key = "client_id, date_trunc('hour', at), project_id, project_flow_id, region, prefix, channel, provider";
    let columns = "client_id, hour, project_id, project_flow_id, region, prefix, channel, provider";
    format!(
        "WITH d AS (
            DELETE FROM validation_stats_deltas
             WHERE id IN (SELECT id FROM validation_stats_deltas ORDER BY id LIMIT $1)
            RETURNING *
         ), s AS (
            INSERT INTO validation_stats AS s ({columns}, created, sent, delivered, validated, failed, blocked)
            SELECT {key}, sum(created), sum(sent), sum(delivered), sum(validated), sum(failed), sum(blocked)
              FROM d GROUP BY {key} ORDER BY {key}
            ON CONFLICT ({columns}) DO UPDATE
               SET created = s.created + excluded.created, sent = s.sent + excluded.sent,
                   delivered = s.delivered + excluded.delivered, validated = s.validated + excluded.validated,
                   failed = s.failed + excluded.failed, blocked = s.blocked + excluded.blocked
         ), t AS (
            INSERT INTO validation_stats_ttv AS t ({columns}, bucket, validated)
            SELECT {key}, ttv_bucket, sum(validated) FROM d WHERE ttv_bucket IS NOT NULL
             GROUP BY {key}, ttv_bucket HAVING sum(validated) <> 0 ORDER BY {key}, ttv_bucket
            ON CONFLICT ({columns}, bucket) DO UPDATE SET validated = t.validated + excluded.validated
         ), f AS (
            INSERT INTO fraud_counters AS f (client_id, project_flow_id, country_code, prefix, bucket, sent, validated)
            SELECT client_id, project_flow_id, country_code, prefix,
                   at, sum(sent), sum(validated)
              FROM d
             WHERE provider NOT IN ('', 'test', 'none') AND at > now() - make_interval(secs => $2)
             GROUP BY 1, 2, 3, 4, 5 HAVING sum(sent) <> 0 OR sum(validated) <> 0 ORDER BY 1, 5, 2, 4
            ON CONFLICT (client_id, bucket, project_flow_id, prefix) DO UPDATE
               SET sent = f.sent + excluded.sent, validated = f.validated + excluded.validated
         )
         SELECT count(*) FROM d"
    )
});

/// Moves the appended deltas into `validation_stats`, `validation_stats_ttv`
/// and (sends by a real provider within `window`) `fraud_counters`, in the
/// caller's transaction. Returns how many deltas it folded.
pub async fn fold(conn: &mut PgConnection, window: Duration) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&FOLD)
        .bind(FOLD_BATCH)
        .bind(window.as_secs_f64())
        .fetch_one(conn)
        .await
}

/// Vacuums what folding deleted and updated, so readers never wade through
/// dead rows whether or not autovacuum runs (an operator may turn it off,
/// or it may lag under load: a million folded deltas left 4.8 M dead rows
/// and a second per stats read). Outside any transaction (VACUUM cannot run
/// in one); `SKIP_LOCKED` so a vacuum already at work is not waited for.
/// Only the rows every snapshot has stopped seeing can go; a long reader
/// holds them back until the next fold's vacuum.
pub async fn vacuum(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "VACUUM (SKIP_LOCKED) validation_stats_deltas, validation_stats, validation_stats_ttv, fraud_counters",
    )
    .execute(pool)
    .await?;
    Ok(())
}

const RECORD_BLOCKED: &str =
    "INSERT INTO validation_stats_deltas (client_id, project_id, project_flow_id, at, region, country_code,
                prefix, channel, provider, blocked)
         VALUES ($1, $2, $3, date_trunc('second', now()), $4, $5, $6, $7, '', 1)";

/// Records creates the guard refused (nothing else would: they write no
/// validation).
pub async fn record_blocked(pool: &PgPool, refused: &Refused<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_BLOCKED)
        .bind(refused.client)
        .bind(refused.project)
        .bind(refused.flow)
        .bind(refused.region)
        .bind(refused.country_code)
        .bind(refused.prefix)
        .bind(refused.channel)
        .execute(pool)
        .await?;
    Ok(())
}

/// A create the guard refused, as the stats key it.
pub struct Refused<'a> {
    pub client: &'a ObjectId,
    pub project: &'a ObjectId,
    pub flow: &'a ObjectId,
    pub region: &'a str,
    pub country_code: &'a str,
    pub prefix: &'a str,
    pub channel: &'a str,
}

/// `groupBy` of the stats route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Country,
    Prefix,
    Channel,
    Provider,
    Day,
}

impl GroupBy {
    /// Every grouping.
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Country,
        GroupBy::Prefix,
        GroupBy::Channel,
        GroupBy::Provider,
        GroupBy::Day,
    ];

    /// The key's SQL over a rollup row (`hour`) or a delta (`at`).
    fn key_sql(self, time: &str) -> String {
        match self {
            GroupBy::Country => "CASE WHEN region = '' THEN 'unknown' ELSE region END".to_owned(),
            GroupBy::Prefix => "prefix".to_owned(),
            GroupBy::Channel => "channel".to_owned(),
            GroupBy::Provider => "CASE WHEN provider = '' THEN 'unsent' ELSE provider END".to_owned(),
            GroupBy::Day => format!("to_char({time} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        }
    }
}

/// One row of the stats answer (docs/contract.md §10).
#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatsRow {
    pub key: String,
    pub created: i64,
    pub sent: i64,
    pub delivered: i64,
    pub validated: i64,
    pub failed: i64,
    pub blocked: i64,
    /// validated / sent; 0 when nothing was sent.
    pub conversion_rate: f64,
    /// Read off buckets of seconds to validate (bounds 5, 10, 15, 20, 30,
    /// 45, 60, 90, 120 s…), interpolated inside the median's bucket;
    /// `null` when nothing was validated.
    pub median_seconds_to_validate: Option<f64>,
}

/// What the stats are about: a client's validations created in
/// `[from, to)`, counted by the hour of creation (`from` rounds down to its
/// hour, `to` up), optionally of one project or flow.
pub struct StatsQuery {
    pub client: ObjectId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: GroupBy,
    pub project: Option<ObjectId>,
    pub flow: Option<ObjectId>,
}

/// What the stats read filters on: the client, optionally one project or
/// flow (`$1`, `$4`, `$5`), and the hours of `[from, to)` (`$2`, `$3`).
const FILTER: &str =
    "client_id = $1 AND ($4::text IS NULL OR project_id = $4) AND ($5::text IS NULL OR project_flow_id = $5)";
const ROLLUP_RANGE: &str = "hour >= date_trunc('hour', $2::timestamptz) AND hour < $3";
const DELTA_RANGE: &str = "at >= date_trunc('hour', $2::timestamptz) AND date_trunc('hour', at) < $3";

/// The counts by key, from the rollup and the deltas not folded yet.
fn counts_sql(group_by: GroupBy) -> String {
    let (rollup_key, delta_key) = (group_by.key_sql("hour"), group_by.key_sql("at"));
    let (filter, rollup_range, delta_range) = (FILTER, ROLLUP_RANGE, DELTA_RANGE);
    format!(
        "SELECT key, sum(created)::bigint, sum(sent)::bigint, sum(delivered)::bigint, sum(validated)::bigint,
            sum(failed)::bigint, sum(blocked)::bigint
       FROM (SELECT {rollup_key} AS key, created, sent, delivered, validated, failed, blocked
               FROM validation_stats WHERE {filter} AND {rollup_range}
             UNION ALL
             SELECT {delta_key}, created, sent, delivered, validated, failed, blocked
               FROM validation_stats_deltas WHERE {filter} AND {delta_range}) AS rows
      GROUP BY key ORDER BY key"
    )
}

/// The buckets of time to validate by key, likewise.
fn buckets_sql(group_by: GroupBy) -> String {
    let (rollup_key, delta_key) = (group_by.key_sql("hour"), group_by.key_sql("at"));
    let (filter, rollup_range, delta_range) = (FILTER, ROLLUP_RANGE, DELTA_RANGE);
    format!(
        "SELECT key, bucket, sum(validated)::bigint
       FROM (SELECT {rollup_key} AS key, bucket, validated
               FROM validation_stats_ttv WHERE {filter} AND {rollup_range}
             UNION ALL
             SELECT {delta_key}, ttv_bucket, validated
               FROM validation_stats_deltas WHERE {filter} AND {delta_range} AND ttv_bucket IS NOT NULL) AS rows
      GROUP BY key, bucket"
    )
}

pub async fn query(pool: &PgPool, q: &StatsQuery) -> Result<Vec<StatsRow>, sqlx::Error> {
    // Both statements take the same parameters ($1 to $5).
    let mut args = PgArguments::default();
    args.add(&q.client).map_err(sqlx::Error::Encode)?;
    args.add(q.from).map_err(sqlx::Error::Encode)?;
    args.add(q.to).map_err(sqlx::Error::Encode)?;
    args.add(q.project.as_ref()).map_err(sqlx::Error::Encode)?;
    args.add(q.flow.as_ref()).map_err(sqlx::Error::Encode)?;
    let counts: Vec<KeyCounts> = sqlx::query_as_with(&counts_sql(q.group_by), args.clone())
        .fetch_all(pool)
        .await?;
    let buckets: Vec<(String, i16, i64)> = sqlx::query_as_with(&buckets_sql(q.group_by), args)
        .fetch_all(pool)
        .await?;
    // Thousands of keys (a prefix each) are thousands of rows of each kind:
    // grouped once by key, off the async runtime.
    tokio::task::spawn_blocking(move || assemble(counts, buckets))
        .await
        .map_err(|error| sqlx::Error::Protocol(format!("the stats assembly stopped: {error}")))
}

/// A key's counts: created, sent, delivered, validated, failed, blocked.
type KeyCounts = (String, i64, i64, i64, i64, i64, i64);

/// The answer's rows from each key's counts and its (key, bucket, validated)
/// rows of time to validate, in one pass over each.
fn assemble(counts: Vec<KeyCounts>, buckets: Vec<(String, i16, i64)>) -> Vec<StatsRow> {
    let mut histograms: HashMap<String, [i64; BOUNDS.len() + 1]> = HashMap::new();
    for (key, bucket, n) in buckets {
        let histogram = histograms.entry(key).or_insert([0; BOUNDS.len() + 1]);
        if let Some(slot) = usize::try_from(bucket).ok().and_then(|b| histogram.get_mut(b)) {
            *slot += n;
        }
    }
    counts
        .into_iter()
        .filter(|(_, created, sent, delivered, validated, failed, blocked)| {
            [created, sent, delivered, validated, failed, blocked]
                .iter()
                .any(|n| **n != 0)
        })
        .map(|(key, created, sent, delivered, validated, failed, blocked)| StatsRow {
            created,
            sent,
            delivered,
            validated,
            failed,
            blocked,
            conversion_rate: if sent > 0 { validated as f64 / sent as f64 } else { 0.0 },
            median_seconds_to_validate: histograms.get(&key).and_then(|h| median(h)),
            key,
        })
        .collect()
}

/// The median of a histogram over [`BOUNDS`], interpolated linearly inside
/// its bucket (the first bucket starts at 0; the last one, past a day, is
/// reported as its lower bound).
pub fn median(histogram: &[i64]) -> Option<f64> {
    let total: i64 = histogram.iter().sum();
    if total <= 0 {
        return None;
    }
    let half = total as f64 / 2.0;
    let mut below = 0.0;
    for (i, n) in histogram.iter().enumerate() {
        let n = *n as f64;
        if n > 0.0 && below + n >= half {
            let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
            let Some(upper) = BOUNDS.get(i) else {
                return Some(lower);
            };
            return Some(lower + (upper - lower) * ((half - below) / n));
        }
        below += n;
    }
    None
}

/// The stats' statements (every `groupBy`), for the schema check. The
/// `VACUUM` of [`vacuum`] is not one: it cannot be prepared.
pub fn statements() -> shared::db::Statements {
    let mut statements = vec![
        ("stats.fold".to_owned(), FOLD.clone()),
        ("stats.record_blocked".to_owned(), RECORD_BLOCKED.to_owned()),
    ];
    for group_by in GroupBy::ALL {
        statements.push((format!("stats.counts.{group_by:?}"), counts_sql(group_by)));
        statements.push((format!("stats.buckets.{group_by:?}"), buckets_sql(group_by)));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_read_off_the_buckets() {
        let mut histogram = [0i64; BOUNDS.len() + 1];
        assert_eq!(median(&histogram), None);
        // Four validations between 10 and 15 s: the middle of that bucket.
        histogram[2] = 4;
        assert_eq!(median(&histogram), Some(12.5));
        // Half under 5 s, half between 60 and 90 s: the top of the first bucket.
        let mut split = [0i64; BOUNDS.len() + 1];
        split[0] = 2;
        split[7] = 2;
        assert_eq!(median(&split), Some(5.0));
        // All past a day: the lower bound.
        let mut late = [0i64; BOUNDS.len() + 1];
        late[BOUNDS.len()] = 3;
        assert_eq!(median(&late), Some(86400.0));
    }

    #[test]
    fn each_key_gets_its_own_buckets() {
        let row = |key: &str, sent: i64, validated: i64| (key.to_owned(), sent, sent, 0, validated, 0, 0);
        let counts = vec![
            row("+507626", 10, 4),
            row("+507671", 10, 2),
            row("+57300", 0, 0),
            row("+1415", 5, 0),
        ];
        let buckets = vec![
            ("+507671".to_owned(), 7, 2),
            ("+507626".to_owned(), 2, 3),
            ("+507626".to_owned(), 2, 1),
        ];
        let rows = assemble(counts, buckets);
        let medians: Vec<(&str, Option<f64>)> = rows
            .iter()
            .map(|r| (r.key.as_str(), r.median_seconds_to_validate))
            .collect();
        // Keys with nothing counted are left out; a key without buckets has no median.
        assert_eq!(
            medians,
            [("+507626", Some(12.5)), ("+507671", Some(75.0)), ("+1415", None)]
        );
        assert_eq!(rows[0].conversion_rate, 0.4);
    }
}
