//! Endpoint deliveries in PostgreSQL (docs/contract.md §13): the claim of
//! due rows, each attempt's record, pausing a stalled endpoint, disabling a
//! failing one, and the retention purge. Any worker runs any of them.

use chrono::{DateTime, Utc};
use shared::batch::{Batcher, Duplicates, StoreError};
use sqlx::PgPool;
use std::time::Duration;

/// Takes up to `$4` due deliveries: per endpoint that may take work now
/// (enabled, not paused) its oldest due rows, at most its room: the local
/// in-flight room (`$1`/`$2` for endpoints with requests in flight, else
/// `$3`) and, under `rateLimitPerSecond`, what is left of this second's
/// window. A window grants only in its first 800 ms, so what it grants
/// reaches the receiver within that second. The endpoints' rate counters are
/// locked (in id order) and charged in the same statement, so workers
/// together never grant more than the limit; rows over it stay due and wait
/// for the next window. Each claimed row's `next_attempt_at` moves past the
/// attempt's deadline (`$5` seconds: a lease), so a crashed worker's claim
/// comes due again.
const CLAIM: &str = "WITH eligible AS (
            SELECT e.id,
                   least(coalesce(busy.free, $3),
                         CASE WHEN e.rate_limit_per_second IS NULL THEN $3
                              WHEN now() >= date_trunc('second', now()) + interval '800 milliseconds' THEN 0
                              WHEN e.rate_window = date_trunc('second', now())
                                   THEN greatest(e.rate_limit_per_second - e.rate_used, 0)
                              ELSE e.rate_limit_per_second END) AS room
              FROM webhook_endpoints e
              LEFT JOIN unnest($1::text[], $2::int[]) AS busy(id, free) ON busy.id = e.id
             WHERE NOT e.disabled AND (e.paused_until IS NULL OR e.paused_until <= now())
         ), candidates AS (
            SELECT d.event_id, d.endpoint_id,
                   row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.event_id) AS rank
              FROM eligible el
             CROSS JOIN LATERAL (
                    SELECT w.event_id, w.endpoint_id, w.next_attempt_at
                      FROM webhook_endpoint_deliveries w
                     WHERE w.endpoint_id = el.id AND w.status = 'pending' AND w.next_attempt_at <= now()
                     ORDER BY w.endpoint_id, w.next_attempt_at
                     LIMIT el.room
                       FOR UPDATE SKIP LOCKED) d
             WHERE el.room > 0
             LIMIT $4
         ), limited AS (
            SELECT e.id, e.rate_limit_per_second AS rate,
                   CASE WHEN e.rate_window = date_trunc('second', now()) THEN e.rate_used ELSE 0 END AS used
              FROM webhook_endpoints e
             WHERE e.rate_limit_per_second IS NOT NULL AND e.id IN (SELECT endpoint_id FROM candidates)
             ORDER BY e.id
               FOR UPDATE
         ), allowed AS (
            SELECT c.event_id, c.endpoint_id
              FROM candidates c
              LEFT JOIN limited l ON l.id = c.endpoint_id
             WHERE l.id IS NULL OR c.rank <= l.rate - l.used
         ), charged AS (
            UPDATE webhook_endpoints e
               SET rate_window = date_trunc('second', now()), rate_used = l.used + g.n
              FROM limited l
              JOIN (SELECT endpoint_id, count(*)::int AS n FROM allowed GROUP BY endpoint_id) g
                ON g.endpoint_id = l.id
             WHERE e.id = l.id
         ), taken AS (
            UPDATE webhook_endpoint_deliveries d
               SET attempts = d.attempts + 1, last_attempt_at = now(),
                   next_attempt_at = now() + make_interval(secs => $5)
              FROM allowed a
             WHERE d.event_id = a.event_id AND d.endpoint_id = a.endpoint_id
         RETURNING d.event_id, d.endpoint_id, d.client_id, d.attempts
         )
         SELECT t.event_id, t.endpoint_id, t.client_id, t.attempts, e.url, e.secret, e.previous_secret,
                COALESCE(e.previous_secret_expires_at > now(), false) AS previous_valid, m.payload::text AS payload
           FROM taken t
           JOIN webhook_endpoints e ON e.id = t.endpoint_id
           JOIN webhook_messages m ON m.event_id = t.event_id";

/// Each attempt's row, its delivery's new state (only while the delivery is
/// still the round this worker claimed: a resend meanwhile wins), and the
/// endpoints' health: `failing_since` set by a failure when unset, cleared
/// by a 2xx when set; `last_success_at` written at most once a minute.
/// Answers, per attempt, whether its endpoint has failed for longer than
/// `$13` seconds.
///
/// The delivery is found by its key, never through the due index: a plan
/// that read the due index (all pending rows, when the table's statistics
/// said they were few: a fresh database, or a burst since the last ANALYZE)
/// read every pending row at each record; beside a dead endpoint's backlog
/// of 10,000 rows that was 121 ms and 10,000 buffers a record, against
/// 2.7 ms and 800 by the key. So "pending" is spelled as a test the due
/// index's predicate cannot answer (the CHECK constraint makes it the
/// same), and the statement is planned at each run (unnamed) rather than
/// once per connection as the pool's `force_generic_plan` would: a plan
/// cached while the table was empty would scan it whole.
const RECORD: &str = "WITH f AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[],
                                 $7::text[], $8::int[], $9::int[], $10::text[], $11::text[], $12::timestamptz[])
                AS f(event_id, endpoint_id, client_id, attempts, status, next_attempt_at,
                     url, status_code, latency_ms, error, response_body, attempted_at)
         ), settled AS (
            UPDATE webhook_endpoint_deliveries d
               SET status = f.status, next_attempt_at = f.next_attempt_at,
                   last_attempt_at = f.attempted_at, last_status_code = f.status_code
              FROM f
             WHERE d.event_id = f.event_id AND d.endpoint_id = f.endpoint_id
               AND d.attempts = f.attempts AND d.status <> 'delivered' AND d.status <> 'failed'
         ), logged AS (
            INSERT INTO webhook_endpoint_attempts
                   (event_id, endpoint_id, client_id, url, attempted_at, status_code, latency_ms, error, response_body)
            SELECT event_id, endpoint_id, client_id, url, attempted_at, status_code, latency_ms, error, response_body
              FROM f
         ), health AS (
            SELECT endpoint_id, bool_or(COALESCE(status_code BETWEEN 200 AND 299, false)) AS ok
              FROM f GROUP BY endpoint_id
         ), marked AS (
            UPDATE webhook_endpoints e
               SET failing_since = CASE WHEN h.ok THEN NULL ELSE now() END,
                   last_success_at = CASE WHEN h.ok THEN now() ELSE e.last_success_at END
              FROM health h
             WHERE e.id = h.endpoint_id
               AND CASE WHEN h.ok THEN e.failing_since IS NOT NULL OR e.last_success_at IS NULL
                                       OR e.last_success_at < now() - interval '1 minute'
                        ELSE e.failing_since IS NULL END
         )
         SELECT f.event_id, f.endpoint_id,
                COALESCE(NOT h.ok AND NOT e.disabled AND e.failing_since < now() - make_interval(secs => $13), false)
           FROM f
           JOIN health h ON h.endpoint_id = f.endpoint_id
           JOIN webhook_endpoints e ON e.id = f.endpoint_id";

/// Disables an endpoint that has failed for longer than `$2` seconds;
/// answers whether this call did.
const DISABLE: &str = "UPDATE webhook_endpoints
            SET disabled = true, disabled_reason = 'failing', updated_at = now()
          WHERE id = $1 AND NOT disabled AND failing_since < now() - make_interval(secs => $2)
      RETURNING id";
/// Fails what an endpoint disabled for failing still has pending.
const FAIL_PENDING: &str = "UPDATE webhook_endpoint_deliveries d SET status = 'failed', next_attempt_at = NULL
           FROM webhook_endpoints e
          WHERE d.endpoint_id = $1 AND d.status = 'pending'
            AND e.id = d.endpoint_id AND e.disabled AND e.disabled_reason = 'failing'";

/// Rests a stalled endpoint for `$2` seconds: no worker claims its deliveries meanwhile.
const PAUSE: &str = "UPDATE webhook_endpoints SET paused_until = now() + make_interval(secs => $2)
          WHERE id = $1 AND NOT disabled
            AND (paused_until IS NULL OR paused_until < now() + make_interval(secs => $2))";

/// Retention: the oldest messages (their deliveries go with them) and
/// attempts past `$1` seconds, `$2` at a time; rows another worker is
/// purging are skipped.
const PURGE_MESSAGES: &str = "DELETE FROM webhook_messages WHERE event_id IN (
            SELECT event_id FROM webhook_messages
             WHERE created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
const PURGE_ATTEMPTS: &str = "DELETE FROM webhook_endpoint_attempts WHERE id IN (
            SELECT id FROM webhook_endpoint_attempts
             WHERE attempted_at < now() - make_interval(secs => $1)
             ORDER BY attempted_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// A claimed delivery: what to POST, where, signed with what.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub event_id: String,
    pub endpoint_id: String,
    pub client_id: String,
    /// This attempt's number in its round, from 1.
    pub attempts: i32,
    pub url: String,
    /// Sealed (`shared::webhook_secrets`, the endpoint id as associated data).
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_valid: bool,
    /// The body, as stored at fan-out.
    pub payload: String,
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub client_id: String,
    pub attempts: i32,
    /// `delivered`, `pending` (retried at `next_attempt_at`) or `failed`.
    pub status: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub url: String,
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub attempted_at: DateTime<Utc>,
}

/// (event id, endpoint id).
type DeliveryKey = (String, String);

pub struct EndpointStore {
    pool: PgPool,
    records: Batcher<DeliveryKey, AttemptRecord, bool>,
}

impl EndpointStore {
    /// `disable_after`: how long an endpoint may fail before it is disabled.
    pub fn start(pool: PgPool, disable_after: Duration) -> Self {
        let record = pool.clone();
        let records = Batcher::start_with(2, Duplicates::FirstWins, move |keys, attempts| {
            record_many(record.clone(), keys, attempts, disable_after)
        });
        Self { pool, records }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims due deliveries: `busy` lists (endpoint, free slots) for the
    /// endpoints with requests in flight here; others get `per_endpoint`.
    pub async fn claim(
        &self,
        busy: &[(String, i32)],
        per_endpoint: i32,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
        sqlx::query_as(CLAIM)
            .bind(busy.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
            .bind(busy.iter().map(|(_, free)| *free).collect::<Vec<_>>())
            .bind(per_endpoint)
            .bind(limit)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await
    }

    /// Records an attempt (batched); answers whether its endpoint has been
    /// failing for longer than it may.
    pub async fn record(&self, event_id: &str, endpoint_id: &str, attempt: AttemptRecord) -> Result<bool, StoreError> {
        let key = (event_id.to_owned(), endpoint_id.to_owned());
        Ok(self.records.submit(key, attempt).await?.unwrap_or(false))
    }

    /// Disables a failing endpoint; whether this call did.
    pub async fn disable(&self, endpoint_id: &str, after: Duration) -> Result<bool, sqlx::Error> {
        let disabled: Option<String> = sqlx::query_scalar(DISABLE)
            .bind(endpoint_id)
            .bind(after.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        Ok(disabled.is_some())
    }

    /// Fails the pending deliveries of an endpoint disabled for failing; how many.
    pub async fn fail_pending(&self, endpoint_id: &str) -> Result<u64, sqlx::Error> {
        let failed = sqlx::query(FAIL_PENDING).bind(endpoint_id).execute(&self.pool).await?;
        Ok(failed.rows_affected())
    }

    pub async fn pause(&self, endpoint_id: &str, rest: Duration) -> Result<(), sqlx::Error> {
        sqlx::query(PAUSE)
            .bind(endpoint_id)
            .bind(rest.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One purge step: (messages, attempts) deleted, at most `batch` each.
    pub async fn purge(&self, older_than: Duration, batch: i64) -> Result<(u64, u64), sqlx::Error> {
        let secs = older_than.as_secs_f64();
        let messages = sqlx::query(PURGE_MESSAGES)
            .bind(secs)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        let attempts = sqlx::query(PURGE_ATTEMPTS)
            .bind(secs)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok((messages.rows_affected(), attempts.rows_affected()))
    }
}

async fn record_many(
    pool: PgPool,
    keys: Vec<DeliveryKey>,
    records: Vec<AttemptRecord>,
    disable_after: Duration,
) -> Result<Vec<(DeliveryKey, bool)>, sqlx::Error> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(RECORD)
        .persistent(false)
        .bind(keys.iter().map(|(event, _)| event.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|(_, endpoint)| endpoint.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.client_id.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.url.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.status_code.map(i32::from)).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|r| i32::try_from(r.latency.as_millis()).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.response_body.as_deref()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.attempted_at).collect::<Vec<_>>())
        .bind(disable_after.as_secs_f64())
        .fetch_all(&pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(event, endpoint, expired)| ((event, endpoint), expired))
        .collect())
}

pub(super) fn statements() -> shared::db::Statements {
    [
        ("webhooks.endpoint_claim", CLAIM),
        ("webhooks.endpoint_record", RECORD),
        ("webhooks.endpoint_disable", DISABLE),
        ("webhooks.endpoint_fail_pending", FAIL_PENDING),
        ("webhooks.endpoint_pause", PAUSE),
        ("webhooks.purge_messages", PURGE_MESSAGES),
        ("webhooks.purge_attempts", PURGE_ATTEMPTS),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
