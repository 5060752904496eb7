//! The worker's database, batched. Every delivery reads its validation,
//! claims its attempt before the POST and records it after; under a burst,
//! one statement (and one commit) each would cost PostgreSQL a round trip, a
//! plan and a WAL flush per delivery. Through `shared::batch` the requests
//! that arrive together share one statement, and each caller still waits
//! for its own row, so no attempt counts before it is durable.

mod attempts;
mod endpoints;
mod fanout;
mod targets;

pub use attempts::{AttemptKey, Claim, Finished, Outcome};
pub use endpoints::{AttemptRecord, ClaimedDelivery, EndpointStore};
pub use fanout::{EndpointFilter, FanOutStore, NewMessage};
pub use shared::batch::StoreError;
pub use targets::{LoadError, Target, TargetCache};

use crate::body::BlockObject;
use shared::batch::{Batcher, Duplicates};
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static VALIDATIONS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM phone_validations WHERE id = ANY($1)"));
const BLOCK: &str = "SELECT b.client_id, b.project_flow_id, f.project_id, b.prefix, b.until, b.sent, b.validated
           FROM fraud_blocks b LEFT JOIN project_flows f ON f.id = b.project_flow_id WHERE b.id = $1";
const CLAIM_MANY: &str = "WITH input AS (
            SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[])
                AS i(event_id, round, attempt, event_type, validation_id, client_id, url)
         ), delivered AS (
            SELECT DISTINCT d.event_id FROM webhook_deliveries d
             WHERE d.event_id = ANY($1) AND d.outcome = 'delivered'
         ), claimed AS (
            INSERT INTO webhook_deliveries (event_id, event_type, validation_id, client_id, url, round, attempt, outcome)
            SELECT event_id, event_type, validation_id, client_id, url, round, attempt, 'in_flight'
              FROM input WHERE event_id NOT IN (SELECT event_id FROM delivered)
            ON CONFLICT (event_id, round, attempt) DO NOTHING
            RETURNING id, event_id, round, attempt
         )
         SELECT i.event_id, i.round, i.attempt, c.id, d.event_id IS NOT NULL
           FROM input i
           LEFT JOIN claimed c ON c.event_id = i.event_id AND c.round = i.round AND c.attempt = i.attempt
           LEFT JOIN delivered d ON d.event_id = i.event_id";
const FINISH_MANY: &str = "UPDATE webhook_deliveries AS d
            SET status_code = f.status_code, latency_ms = f.latency_ms, error = f.error,
                next_attempt_at = f.next_attempt_at, outcome = f.outcome
           FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::timestamptz[], $6::text[])
             AS f(id, status_code, latency_ms, error, next_attempt_at, outcome)
          WHERE d.id = f.id
      RETURNING d.id";

/// A fraud-guard block as the worker reads it.
#[derive(sqlx::FromRow)]
pub struct Block {
    pub client_id: ObjectId,
    pub project_flow_id: ObjectId,
    pub project_id: Option<String>,
    #[sqlx(flatten)]
    pub block: BlockObject,
}

/// Batches of each statement in flight at once: while one waits for its
/// commit, the next gathers.
const RUNNERS: usize = 2;

/// Which attempt of which event: (event id, round, attempt).
type AttemptId = (String, i32, i32);

/// What a claim writes besides its id.
struct NewAttempt {
    event_type: &'static str,
    validation: ObjectId,
    client: ObjectId,
    url: String,
}

/// The batched claim's answer for one attempt.
#[derive(Clone, Copy)]
enum Claimed {
    Row(i64),
    /// The event was delivered already.
    Delivered,
}

pub struct Store {
    pool: PgPool,
    validations: Batcher<ObjectId, (), PhoneValidation>,
    claims: Batcher<AttemptId, NewAttempt, Claimed>,
    records: Batcher<i64, Finished, ()>,
    targets: TargetCache,
    /// An `in_flight` claim older than this belongs to a worker that died.
    stale_after: Duration,
}

impl Store {
    pub fn start(pool: PgPool, targets: TargetCache, stale_after: Duration) -> Self {
        let read = pool.clone();
        let validations = Batcher::start_with(RUNNERS, Duplicates::Share, move |ids, _| {
            load_validations(read.clone(), ids)
        });
        let claim = pool.clone();
        let claims = Batcher::start_with(RUNNERS, Duplicates::FirstWins, move |ids, attempts| {
            claim_many(claim.clone(), ids, attempts)
        });
        let record = pool.clone();
        let records = Batcher::start_with(RUNNERS, Duplicates::FirstWins, move |ids, finished| {
            record_many(record.clone(), ids, finished)
        });
        Self {
            pool,
            validations,
            claims,
            records,
            targets,
            stale_after,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The validation as it is now (`None`: no such validation).
    pub async fn validation(&self, id: &ObjectId) -> Result<Option<PhoneValidation>, StoreError> {
        Ok(self.validations.submit(id.clone(), ()).await?)
    }

    /// A fraud-guard block by id: its client, its flow, the flow's project
    /// (when the flow still exists) and what the webhook tells of it
    /// (`None`: no such block). Blocks are rare: one query each.
    pub async fn block(&self, id: &ObjectId) -> Result<Option<Block>, sqlx::Error> {
        sqlx::query_as(BLOCK).bind(id).fetch_optional(&self.pool).await
    }

    /// The target as last loaded, however old, without touching the database.
    pub fn cached_target(&self, client: &ObjectId, flow: &ObjectId) -> Option<Arc<Target>> {
        self.targets.cached(client, flow).map(|(_, target)| target)
    }

    /// The client's signing keys and the flow's URL (cached for a moment).
    pub async fn target(&self, client: &ObjectId, flow: &ObjectId) -> Result<Option<Arc<Target>>, LoadError> {
        self.targets.get(&self.pool, client, flow).await
    }

    /// Claims an attempt (batched); an attempt that already has a row (a
    /// duplicate message, a dead worker's claim) is settled one at a time.
    pub async fn claim(&self, key: &AttemptKey<'_>) -> Result<Claim, StoreError> {
        let id = (key.event_id.to_owned(), key.round, key.attempt);
        let attempt = NewAttempt {
            event_type: key.event_type,
            validation: key.validation_id.clone(),
            client: key.client_id.clone(),
            url: key.url.to_owned(),
        };
        match self.claims.submit(id, attempt).await? {
            Some(Claimed::Row(row)) => Ok(Claim::Claimed(row)),
            Some(Claimed::Delivered) => Ok(Claim::AlreadyDelivered),
            None => Ok(attempts::claim(&self.pool, key, self.stale_after).await?),
        }
    }

    /// Completes a claimed attempt's row (batched).
    pub async fn finish(&self, row: i64, finished: Finished) -> Result<(), StoreError> {
        self.records.submit(row, finished).await?;
        Ok(())
    }
}

async fn load_validations(pool: PgPool, ids: Vec<ObjectId>) -> Result<Vec<(ObjectId, PhoneValidation)>, sqlx::Error> {
    let rows: Vec<PhoneValidation> = sqlx::query_as(&VALIDATIONS).bind(ids).fetch_all(&pool).await?;
    Ok(rows.into_iter().map(|v| (v.id.clone(), v)).collect())
}

/// Inserts the attempts as `in_flight` unless their event was delivered
/// already; an attempt whose row exists is left out of the answer.
async fn claim_many(
    pool: PgPool,
    ids: Vec<AttemptId>,
    attempts: Vec<NewAttempt>,
) -> Result<Vec<(AttemptId, Claimed)>, sqlx::Error> {
    let events: Vec<&str> = ids.iter().map(|(event, _, _)| event.as_str()).collect();
    let rounds: Vec<i32> = ids.iter().map(|(_, round, _)| *round).collect();
    let numbers: Vec<i32> = ids.iter().map(|(_, _, attempt)| *attempt).collect();
    let rows: Vec<(String, i32, i32, Option<i64>, bool)> = sqlx::query_as(CLAIM_MANY)
        .bind(&events)
        .bind(&rounds)
        .bind(&numbers)
        .bind(attempts.iter().map(|a| a.event_type).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.validation.as_str()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.client.as_str()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.url.as_str()).collect::<Vec<_>>())
        .fetch_all(&pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(event, round, attempt, row, delivered)| {
            let answer = match (row, delivered) {
                (_, true) => Claimed::Delivered,
                (Some(row), false) => Claimed::Row(row),
                (None, false) => return None,
            };
            Some(((event, round, attempt), answer))
        })
        .collect())
}

/// Completes the attempts' rows in one statement.
async fn record_many(pool: PgPool, ids: Vec<i64>, finished: Vec<Finished>) -> Result<Vec<(i64, ())>, sqlx::Error> {
    let updated: Vec<i64> = sqlx::query_scalar(FINISH_MANY)
        .bind(&ids)
        .bind(
            finished
                .iter()
                .map(|f| f.status_code.map(i32::from))
                .collect::<Vec<_>>(),
        )
        .bind(
            finished
                .iter()
                .map(|f| i32::try_from(f.latency.as_millis()).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(finished.iter().map(|f| f.error.as_deref()).collect::<Vec<_>>())
        .bind(finished.iter().map(|f| f.next_attempt_at).collect::<Vec<_>>())
        .bind(finished.iter().map(|f| f.outcome.as_str()).collect::<Vec<_>>())
        .fetch_all(&pool)
        .await?;
    Ok(updated.into_iter().map(|id| (id, ())).collect())
}

/// Every statement of the worker, for the schema check.
pub fn statements() -> shared::db::Statements {
    let mut statements: shared::db::Statements = [
        ("webhooks.validations", VALIDATIONS.as_str()),
        ("webhooks.block", BLOCK),
        ("webhooks.claim_many", CLAIM_MANY),
        ("webhooks.finish_many", FINISH_MANY),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into();
    statements.extend(attempts::statements());
    statements.extend(endpoints::statements());
    statements.extend(fanout::statements());
    statements.extend(targets::statements());
    statements
}
