//! The `webhook_deliveries` rows. An attempt is claimed (inserted as
//! `in_flight`) before its request and completed after it; the claim is what
//! keeps a redelivered message, or a duplicate on another worker, from
//! POSTing an event twice.

use chrono::{DateTime, Utc};
use shared::ObjectId;
use sqlx::PgPool;
use std::time::Duration;

const CLAIM: &str = "WITH delivered AS (
             SELECT 1 FROM webhook_deliveries WHERE event_id = $1 AND outcome = 'delivered'
         ), claimed AS (
             INSERT INTO webhook_deliveries
                    (event_id, event_type, validation_id, client_id, url, round, attempt, outcome)
             SELECT $1, $2, $3, $4, $5, $6, $7, 'in_flight'
              WHERE NOT EXISTS (SELECT 1 FROM delivered)
             ON CONFLICT (event_id, round, attempt) DO NOTHING
             RETURNING id
         )
         SELECT (SELECT id FROM claimed), EXISTS (SELECT 1 FROM delivered)";
const OUTCOME: &str = "SELECT outcome FROM webhook_deliveries WHERE event_id = $1 AND round = $2 AND attempt = $3";
const RECLAIM: &str = "UPDATE webhook_deliveries
            SET outcome = 'in_flight', attempted_at = now(), url = $4, status_code = NULL,
                latency_ms = NULL, error = NULL, next_attempt_at = NULL
          WHERE event_id = $1 AND round = $2 AND attempt = $3
            AND (outcome = 'unscheduled'
                 OR (outcome = 'in_flight' AND attempted_at < now() - make_interval(secs => $5)))
      RETURNING id";

/// How an attempt row ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retrying,
    Gone,
    Refused,
    DeadLettered,
    /// Failed, but the follow-up could not be queued: the next worker to see
    /// the message takes the attempt over.
    Unscheduled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retrying => "retrying",
            Outcome::Gone => "gone",
            Outcome::Refused => "refused",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Unscheduled => "unscheduled",
        }
    }
}

/// Which attempt of which event a message stands for.
pub struct AttemptKey<'a> {
    pub event_id: &'a str,
    pub event_type: &'static str,
    pub validation_id: &'a ObjectId,
    pub client_id: &'a ObjectId,
    pub url: &'a str,
    pub round: i32,
    pub attempt: i32,
}

/// The result of trying to claim an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours: make the request, then `finish` this row.
    Claimed(i64),
    /// The event was delivered already: nothing to do.
    AlreadyDelivered,
    /// This attempt was made and its follow-up queued: the message is a duplicate.
    AlreadyDone,
    /// Another worker is making this attempt right now.
    Busy,
}

/// Claims `key`. An `in_flight` claim older than `stale_after` (its worker
/// died mid-request) or an `unscheduled` one is taken over.
pub async fn claim(pool: &PgPool, key: &AttemptKey<'_>, stale_after: Duration) -> Result<Claim, sqlx::Error> {
    let (claimed, delivered): (Option<i64>, bool) = sqlx::query_as(CLAIM)
        .bind(key.event_id)
        .bind(key.event_type)
        .bind(key.validation_id)
        .bind(key.client_id)
        .bind(key.url)
        .bind(key.round)
        .bind(key.attempt)
        .fetch_one(pool)
        .await?;
    if delivered {
        return Ok(Claim::AlreadyDelivered);
    }
    if let Some(id) = claimed {
        return Ok(Claim::Claimed(id));
    }
    if let Some(id) = take_over(pool, key, stale_after).await? {
        return Ok(Claim::Claimed(id));
    }
    let outcome: Option<String> = sqlx::query_scalar(OUTCOME)
        .bind(key.event_id)
        .bind(key.round)
        .bind(key.attempt)
        .fetch_optional(pool)
        .await?;
    Ok(match outcome.as_deref() {
        Some("in_flight") => Claim::Busy,
        // Deleted between our statements (an operator cleaned up): try again later.
        None => Claim::Busy,
        Some(_) => Claim::AlreadyDone,
    })
}

/// Takes over an attempt whose worker died mid-request (`in_flight` for
/// longer than `stale_after`) or whose follow-up could not be queued.
async fn take_over(pool: &PgPool, key: &AttemptKey<'_>, stale_after: Duration) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(RECLAIM)
        .bind(key.event_id)
        .bind(key.round)
        .bind(key.attempt)
        .bind(key.url)
        .bind(stale_after.as_secs_f64())
        .fetch_optional(pool)
        .await
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub struct Finished {
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
}

pub(super) fn statements() -> shared::db::Statements {
    [
        ("webhooks.claim", CLAIM),
        ("webhooks.outcome", OUTCOME),
        ("webhooks.reclaim", RECLAIM),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
