//! The worker's database access: who to deliver to and with which keys, and
//! the `webhook_deliveries` rows. An attempt is claimed (inserted as
//! `in_flight`) before its request and completed after it; the claim is what
//! keeps a redelivered message, or a duplicate on another worker, from
//! POSTing an event twice.

use crate::signing::{InvalidSecret, SigningKey};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use shared::webhook_secrets::{OpenError, WebhookSecretKeys};
use shared::ObjectId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a delivery needs besides the event.
pub struct Target {
    /// The flow's `webhookUrl` (the validation's own URL wins over it).
    pub flow_url: Option<String>,
    /// The current key, then the previous one while it is still valid.
    pub keys: Vec<SigningKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Secret(#[from] InvalidSecret),
    #[error(transparent)]
    Sealed(#[from] OpenError),
}

/// The client's signing keys (their secrets opened with `WEBHOOK_SECRET_KEY`)
/// and the flow's URL; `None` when the client is gone.
pub async fn load_target(
    pool: &PgPool,
    sealing: &WebhookSecretKeys,
    client: &ObjectId,
    flow: &ObjectId,
) -> Result<Option<Target>, LoadError> {
    let row: Option<(String, Option<String>, bool, Option<String>)> = sqlx::query_as(
        "SELECT c.webhook_secret, c.previous_webhook_secret,
                COALESCE(c.previous_webhook_secret_expires_at > now(), false),
                f.phone->>'webhookUrl'
           FROM clients c
           LEFT JOIN project_flows f ON f.id = $2 AND f.client_id = c.id
          WHERE c.id = $1",
    )
    .bind(client)
    .bind(flow)
    .fetch_optional(pool)
    .await?;
    let Some((current, previous, previous_valid, flow_url)) = row else {
        return Ok(None);
    };
    let client = client.to_string();
    let mut keys = vec![SigningKey::parse(sealing.open(&client, &current)?.expose_secret())?];
    if let (Some(previous), true) = (previous, previous_valid) {
        // A broken old secret must not stop deliveries signed with the new one.
        let opened = sealing.open(&client, &previous);
        if let Some(key) = opened
            .ok()
            .and_then(|secret| SigningKey::parse(secret.expose_secret()).ok())
        {
            keys.push(key);
        }
    }
    Ok(Some(Target { flow_url, keys }))
}

/// Targets loaded in the last `ttl`, per (client, flow): under load most
/// events of a flow arrive together, and one query serves them all. A
/// rotated secret or a changed flow URL is seen within `ttl` (the previous
/// secret keeps signing for hours, so nothing fails meanwhile).
pub struct TargetCache {
    ttl: Duration,
    sealing: WebhookSecretKeys,
    entries: Mutex<HashMap<TargetKey, (Instant, Arc<Target>)>>,
}

/// (client, flow).
type TargetKey = (ObjectId, ObjectId);

/// Past this many entries the cache starts over.
const MAX_CACHED_TARGETS: usize = 10_000;

impl TargetCache {
    pub fn new(ttl: Duration, sealing: WebhookSecretKeys) -> Self {
        Self {
            ttl,
            sealing,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The target as last loaded and when, however old, without touching the database.
    pub fn cached(&self, client: &ObjectId, flow: &ObjectId) -> Option<(Instant, Arc<Target>)> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&(client.clone(), flow.clone())).cloned()
    }

    /// The cached target, or a fresh one from the database.
    pub async fn get(
        &self,
        pool: &PgPool,
        client: &ObjectId,
        flow: &ObjectId,
    ) -> Result<Option<Arc<Target>>, LoadError> {
        if let Some((loaded, target)) = self.cached(client, flow) {
            if loaded.elapsed() < self.ttl {
                return Ok(Some(target));
            }
        }
        let Some(target) = load_target(pool, &self.sealing, client, flow).await? else {
            return Ok(None);
        };
        let target = Arc::new(target);
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_CACHED_TARGETS {
            entries.clear();
        }
        entries.insert((client.clone(), flow.clone()), (Instant::now(), target.clone()));
        Ok(Some(target))
    }
}

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
    let (claimed, delivered): (Option<i64>, bool) = sqlx::query_as(
        "WITH delivered AS (
             SELECT 1 FROM webhook_deliveries WHERE event_id = $1 AND outcome = 'delivered'
         ), claimed AS (
             INSERT INTO webhook_deliveries
                    (event_id, event_type, validation_id, client_id, url, round, attempt, outcome)
             SELECT $1, $2, $3, $4, $5, $6, $7, 'in_flight'
              WHERE NOT EXISTS (SELECT 1 FROM delivered)
             ON CONFLICT (event_id, round, attempt) DO NOTHING
             RETURNING id
         )
         SELECT (SELECT id FROM claimed), EXISTS (SELECT 1 FROM delivered)",
    )
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
    let outcome: Option<String> = sqlx::query_scalar(
        "SELECT outcome FROM webhook_deliveries WHERE event_id = $1 AND round = $2 AND attempt = $3",
    )
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
    sqlx::query_scalar(
        "UPDATE webhook_deliveries
            SET outcome = 'in_flight', attempted_at = now(), url = $4, status_code = NULL,
                latency_ms = NULL, error = NULL, next_attempt_at = NULL
          WHERE event_id = $1 AND round = $2 AND attempt = $3
            AND (outcome = 'unscheduled'
                 OR (outcome = 'in_flight' AND attempted_at < now() - make_interval(secs => $5)))
      RETURNING id",
    )
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
