//! The message log of webhook endpoints (docs/contract.md §13): the events
//! (`webhook_messages`), their delivery to each endpoint
//! (`webhook_endpoint_deliveries`) and every attempt
//! (`webhook_endpoint_attempts`), written by the webhook worker; and what a
//! client does with them: resend one, recover an endpoint's failures. Both
//! put deliveries back to `pending`, due now, with a fresh round of
//! attempts; the worker polls due deliveries and sends them with the same
//! `webhook-id`.

use super::list;
use crate::envelope::Page;
use crate::listing::{Paging, MAX_COUNTED};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Statements;
use shared::ObjectId;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgPool};
use std::sync::LazyLock;
use utoipa::ToSchema;

/// A delivery's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or(())
    }
}

/// The message log's filters, each optional.
#[derive(Debug, Default)]
pub struct MessageFilter {
    pub event_type: Option<&'static str>,
    pub endpoint: Option<ObjectId>,
    pub status: Option<DeliveryStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events about this phone validation (the body's `object`).
    pub validation: Option<ObjectId>,
}

/// One event as the log shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// The `webhook-id` of every POST of this event.
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub event_id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = crate::webhook_events::name_schema)]
    pub event_type: String,
    #[serde(serialize_with = "shared::time::serialize")]
    pub occurred_at: DateTime<Utc>,
    /// The body POSTed, the same to every endpoint and on every attempt.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// One per endpoint the event goes to, by endpoint id.
    pub deliveries: Vec<MessageDelivery>,
}

#[derive(Debug, sqlx::FromRow)]
struct MessageRow {
    event_id: String,
    event_type: String,
    occurred_at: DateTime<Utc>,
    payload: serde_json::Value,
}

/// An event's delivery to one endpoint.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelivery {
    #[serde(skip)]
    pub event_id: String,
    #[sqlx(rename = "endpoint_id")]
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub endpoint: String,
    /// `pending` (due at `nextAttemptAt`), `delivered` or `failed`.
    #[schema(value_type = DeliveryStatus)]
    pub status: String,
    /// Attempts in this round (a resend or a recovery starts a new one).
    pub attempts: i32,
    #[serde(serialize_with = "shared::time::serialize_opt")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "shared::time::serialize_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    #[sqlx(rename = "endpoint_id")]
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub endpoint: String,
    pub url: String,
    #[serde(serialize_with = "shared::time::serialize")]
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's HTTP status; none when no answer came.
    pub status_code: Option<i32>,
    pub latency_ms: Option<i32>,
    /// Why no answer came (timeout, connection error, refused address).
    pub error: Option<String>,
    /// The first KiB of the answer's body.
    pub response_body: Option<String>,
}

const MESSAGE_COLUMNS: &str = "m.event_id, m.event_type, m.occurred_at, m.payload";

/// The filters as one condition: each parameter is `NULL` when not given.
/// The validation's (`$7`) is written either way, so that the statement
/// that has it (`*_OF_VALIDATION`) reads 0024's index even under a generic
/// plan, and the one without it binds the same parameters.
fn matching(validation: &str) -> String {
    format!(
        "m.client_id = $1
       AND ($2::text IS NULL OR m.event_type = $2)
       AND ($3::timestamptz IS NULL OR m.occurred_at >= $3)
       AND ($4::timestamptz IS NULL OR m.occurred_at < $4)
       AND (($5::text IS NULL AND $6::text IS NULL)
            OR EXISTS (SELECT 1 FROM webhook_endpoint_deliveries d
                        WHERE d.event_id = m.event_id
                          AND ($5::text IS NULL OR d.endpoint_id = $5)
                          AND ($6::text IS NULL OR d.status = $6)))
       AND {validation}"
    )
}

const ANY_VALIDATION: &str = "$7::text IS NULL";
/// The validation the event's body is about (its `object`), as 0024 indexes it.
const ONE_VALIDATION: &str = "(m.payload -> 'object' ->> '_id') = $7";

fn page_sql(validation: &str) -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM webhook_messages m WHERE {}
          ORDER BY m.occurred_at DESC, m.event_id DESC LIMIT $8 OFFSET $9",
        matching(validation)
    )
}

fn count_sql(validation: &str) -> String {
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM webhook_messages m WHERE {} LIMIT {MAX_COUNTED}) AS matching",
        matching(validation)
    )
}

static PAGE: LazyLock<String> = LazyLock::new(|| page_sql(ANY_VALIDATION));
static COUNT: LazyLock<String> = LazyLock::new(|| count_sql(ANY_VALIDATION));
static PAGE_OF_VALIDATION: LazyLock<String> = LazyLock::new(|| page_sql(ONE_VALIDATION));
static COUNT_OF_VALIDATION: LazyLock<String> = LazyLock::new(|| count_sql(ONE_VALIDATION));

const DELIVERIES: &str =
    "SELECT event_id, endpoint_id, status, attempts, last_attempt_at, next_attempt_at, last_status_code
       FROM webhook_endpoint_deliveries WHERE event_id = ANY($1) AND client_id = $2
      ORDER BY event_id, endpoint_id";

static ONE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {MESSAGE_COLUMNS} FROM webhook_messages m WHERE m.event_id = $1 AND m.client_id = $2")
});

/// `$1` to `$7` of `matching`.
fn matching_args(client: &ObjectId, filter: &MessageFilter) -> Result<PgArguments, BoxDynError> {
    let mut args = PgArguments::default();
    args.add(client)?;
    args.add(filter.event_type)?;
    args.add(filter.since)?;
    args.add(filter.until)?;
    args.add(&filter.endpoint)?;
    args.add(filter.status.map(DeliveryStatus::as_str))?;
    args.add(&filter.validation)?;
    Ok(args)
}

/// A page of the client's events matching `filter`, newest first.
pub async fn page(
    pool: &PgPool,
    client: &ObjectId,
    filter: &MessageFilter,
    paging: Paging,
) -> Result<Page<WebhookMessage>, sqlx::Error> {
    let (page_sql, count_sql) = match filter.validation {
        Some(_) => (&PAGE_OF_VALIDATION, &COUNT_OF_VALIDATION),
        None => (&PAGE, &COUNT),
    };
    let args = matching_args(client, filter).map_err(sqlx::Error::Encode)?;
    let page_args = list::paged(&args, paging).map_err(sqlx::Error::Encode)?;
    let rows = async {
        let rows = sqlx::query_as_with(page_sql, page_args).fetch_all(pool).await?;
        with_deliveries(pool, client, rows).await
    };
    let total = sqlx::query_scalar_with(count_sql, args).fetch_one(pool);
    list::bounded(paging, rows, total).await
}

/// The client's event `event_id` with its deliveries.
pub async fn one(pool: &PgPool, client: &ObjectId, event_id: &ObjectId) -> Result<Option<WebhookMessage>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(&ONE)
        .bind(event_id)
        .bind(client)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_deliveries(pool, client, vec![row]).await?.pop())
}

async fn with_deliveries(
    pool: &PgPool,
    client: &ObjectId,
    rows: Vec<MessageRow>,
) -> Result<Vec<WebhookMessage>, sqlx::Error> {
    let ids: Vec<&str> = rows.iter().map(|row| row.event_id.as_str()).collect();
    let mut deliveries: Vec<MessageDelivery> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(DELIVERIES)
            .bind(&ids)
            .bind(client)
            .fetch_all(pool)
            .await?
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let (mine, rest) = deliveries.drain(..).partition(|d| d.event_id == row.event_id);
            deliveries = rest;
            WebhookMessage {
                event_id: row.event_id,
                event_type: row.event_type,
                occurred_at: row.occurred_at,
                payload: row.payload,
                deliveries: mine,
            }
        })
        .collect())
}

const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM webhook_messages WHERE event_id = $1 AND client_id = $2)";

/// Whether the client has event `event_id` in its log.
pub async fn exists(pool: &PgPool, client: &ObjectId, event_id: &ObjectId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(EXISTS)
        .bind(event_id)
        .bind(client)
        .fetch_one(pool)
        .await
}

const ATTEMPTS: &str = "SELECT endpoint_id, url, attempted_at, status_code, latency_ms, error, response_body
       FROM webhook_endpoint_attempts WHERE event_id = $1 AND client_id = $2
      ORDER BY id DESC LIMIT $3 OFFSET $4";

static ATTEMPTS_COUNT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM webhook_endpoint_attempts
          WHERE event_id = $1 AND client_id = $2 LIMIT {MAX_COUNTED}) AS matching"
    )
});

/// A page of the attempts to deliver the client's event, newest first.
pub async fn attempts(
    pool: &PgPool,
    client: &ObjectId,
    event_id: &ObjectId,
    paging: Paging,
) -> Result<Page<WebhookAttempt>, sqlx::Error> {
    let rows = sqlx::query_as(ATTEMPTS)
        .bind(event_id)
        .bind(client)
        .bind(paging.limit)
        .bind(paging.offset())
        .fetch_all(pool);
    let total = sqlx::query_scalar(&ATTEMPTS_COUNT)
        .bind(event_id)
        .bind(client)
        .fetch_one(pool);
    list::bounded(paging, rows, total).await
}

/// What a new round sets: due now, no attempt made yet.
const AGAIN: &str = "status = 'pending', attempts = 0, next_attempt_at = now()";

static RESEND_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE webhook_endpoint_deliveries d SET {AGAIN}
           FROM webhook_endpoints e
          WHERE d.event_id = $1 AND d.client_id = $2 AND e.id = d.endpoint_id AND NOT e.disabled"
    )
});

/// Sends the client's event again to every enabled endpoint it went to;
/// how many deliveries were queued.
pub async fn resend_all(pool: &PgPool, client: &ObjectId, event_id: &ObjectId) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(&RESEND_ALL)
        .bind(event_id)
        .bind(client)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

static RESEND_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO webhook_endpoint_deliveries (event_id, endpoint_id, client_id, status, attempts, next_attempt_at)
         SELECT m.event_id, e.id, m.client_id, 'pending', 0, now()
           FROM webhook_messages m JOIN webhook_endpoints e ON e.client_id = m.client_id
          WHERE m.event_id = $1 AND m.client_id = $2 AND e.id = $3
         ON CONFLICT (event_id, endpoint_id) DO UPDATE SET {AGAIN}"
    )
});

/// Sends the client's event (again) to its endpoint `endpoint`, which
/// gets a delivery if it had none; how many deliveries were queued.
pub async fn resend_one(
    pool: &PgPool,
    client: &ObjectId,
    event_id: &ObjectId,
    endpoint: &ObjectId,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(&RESEND_ONE)
        .bind(event_id)
        .bind(client)
        .bind(endpoint)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

static RECOVER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE webhook_endpoint_deliveries d SET {AGAIN}
           FROM webhook_messages m
          WHERE d.endpoint_id = $1 AND d.client_id = $2 AND d.status = 'failed'
            AND m.event_id = d.event_id AND m.occurred_at >= $3
            AND ($4::timestamptz IS NULL OR m.occurred_at < $4)"
    )
});

/// Sends again every failed delivery to the client's endpoint of an event
/// that occurred in `[since, until)`; how many were queued.
pub async fn recover(
    pool: &PgPool,
    client: &ObjectId,
    endpoint: &ObjectId,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(&RECOVER)
        .bind(endpoint)
        .bind(client)
        .bind(since)
        .bind(until)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub fn statements() -> Statements {
    [
        ("webhook_messages.page", PAGE.as_str()),
        ("webhook_messages.count", COUNT.as_str()),
        ("webhook_messages.page_of_validation", PAGE_OF_VALIDATION.as_str()),
        ("webhook_messages.count_of_validation", COUNT_OF_VALIDATION.as_str()),
        ("webhook_messages.deliveries", DELIVERIES),
        ("webhook_messages.one", ONE.as_str()),
        ("webhook_messages.exists", EXISTS),
        ("webhook_messages.attempts", ATTEMPTS),
        ("webhook_messages.attempts_count", ATTEMPTS_COUNT.as_str()),
        ("webhook_messages.resend_all", RESEND_ALL.as_str()),
        ("webhook_messages.resend_one", RESEND_ONE.as_str()),
        ("webhook_messages.recover", RECOVER.as_str()),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
