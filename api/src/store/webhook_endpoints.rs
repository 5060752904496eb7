//! The `webhook_endpoints` table as clients manage it (docs/contract.md
//! §13): create, read, list, change, delete, rotate the secret; what
//! `otpctl webhooks` reads and re-enables. Secrets are stored sealed and
//! never read back here: the webhook worker opens them.

use super::list::{self, Filter, Listed};
use crate::envelope::Page;
use crate::error::ApiResult;
use crate::listing::Paging;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Statements;
use shared::domain::WebhookEventType;
use shared::ObjectId;
use sqlx::{PgConnection, PgPool};
use std::sync::LazyLock;
use utoipa::ToSchema;

/// The columns an endpoint is answered from (never its secrets).
const COLUMNS: &str = "id, url, description, event_types, project_id, rate_limit_per_second, \
    disabled, disabled_reason, created_at, updated_at";

const LISTED: Listed = Listed {
    table: "webhook_endpoints",
    columns: COLUMNS,
    filters: &["client_id"],
};

/// An endpoint as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct Row {
    pub id: ObjectId,
    pub url: String,
    pub description: Option<String>,
    /// `NULL`: every type, present and future.
    pub event_types: Option<Vec<String>>,
    pub project_id: Option<ObjectId>,
    pub rate_limit_per_second: Option<i32>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The Webhook Endpoint object. Its secret is answered only by its create
/// and by a rotation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub url: String,
    pub description: Option<String>,
    /// The event types it receives; every type when it was created (or
    /// changed) without `eventTypes`.
    #[schema(schema_with = crate::webhook_events::names_schema)]
    pub event_types: Vec<String>,
    /// When set, only this project's events.
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{24}$")]
    pub project: Option<ObjectId>,
    /// Deliveries per second across every worker; none: no limit.
    pub rate_limit_per_second: Option<i32>,
    pub disabled: bool,
    /// `manual` (`disabled: true` was sent) or `failing` (no 2xx for
    /// `WEBHOOK_DISABLE_AFTER_HOURS`); none while enabled.
    pub disabled_reason: Option<String>,
    /// Whether it receives every type, those added later included.
    pub all_event_types: bool,
    #[serde(serialize_with = "shared::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "shared::time::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl From<Row> for WebhookEndpoint {
    fn from(row: Row) -> Self {
        let all_event_types = row.event_types.is_none();
        let event_types = row.event_types.unwrap_or_else(|| {
            WebhookEventType::ALL
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect()
        });
        Self {
            id: row.id,
            url: row.url,
            description: row.description,
            event_types,
            project: row.project_id,
            rate_limit_per_second: row.rate_limit_per_second,
            disabled: row.disabled,
            disabled_reason: row.disabled_reason,
            all_event_types,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// What an endpoint is made of, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub project: Option<ObjectId>,
    pub rate_limit_per_second: Option<i32>,
    pub disabled: bool,
}

impl From<&Row> for Settings {
    fn from(row: &Row) -> Self {
        Self {
            url: row.url.clone(),
            description: row.description.clone(),
            event_types: row.event_types.clone(),
            project: row.project_id.clone(),
            rate_limit_per_second: row.rate_limit_per_second,
            disabled: row.disabled,
        }
    }
}

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO webhook_endpoints (id, client_id, url, description, event_types, project_id,
                rate_limit_per_second, disabled, disabled_reason, secret)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8 THEN 'manual' END, $9
          WHERE $6::text IS NULL OR EXISTS (SELECT 1 FROM projects WHERE id = $6 AND client_id = $2)
         RETURNING {COLUMNS}"
    )
});

/// Creates `client`'s endpoint `id` with its sealed secret; `None` when
/// the project is not the client's.
pub async fn insert(
    pool: &PgPool,
    id: &ObjectId,
    client: &ObjectId,
    settings: &Settings,
    sealed_secret: &str,
) -> Result<Option<Row>, sqlx::Error> {
    with_settings(&INSERT, id, client, settings)
        .bind(sealed_secret)
        .fetch_optional(pool)
        .await
}

/// `INSERT` and `UPDATE` with their first eight parameters bound: the
/// endpoint, its client and its settings.
fn with_settings<'q>(
    sql: &'q str,
    id: &'q ObjectId,
    client: &'q ObjectId,
    settings: &'q Settings,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, Row, sqlx::postgres::PgArguments> {
    sqlx::query_as(sql)
        .bind(id)
        .bind(client)
        .bind(&settings.url)
        .bind(&settings.description)
        .bind(&settings.event_types)
        .bind(&settings.project)
        .bind(settings.rate_limit_per_second)
        .bind(settings.disabled)
}

pub async fn one(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> ApiResult<Option<Row>> {
    list::one(pool, &LISTED, id, client).await
}

pub async fn page(pool: &PgPool, client: &ObjectId, paging: Paging) -> ApiResult<Page<WebhookEndpoint>> {
    let rows: Page<Row> = list::page(pool, &LISTED, Filter::client(client)?, paging).await?;
    Ok(Page {
        data: rows.data.into_iter().map(WebhookEndpoint::from).collect(),
        page: rows.page,
        limit: rows.limit,
        total: rows.total,
    })
}

static LOCK: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND client_id = $2 FOR UPDATE"));

/// The client's endpoint `id`, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: &ObjectId, client: &ObjectId) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as(&LOCK).bind(id).bind(client).fetch_optional(conn).await
}

const PROJECT_OWNED: &str = "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND client_id = $2)";

/// Whether the project is the client's.
pub async fn owns_project(conn: &mut PgConnection, project: &ObjectId, client: &ObjectId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(PROJECT_OWNED)
        .bind(project)
        .bind(client)
        .fetch_one(conn)
        .await
}

/// The new settings; `disabled` turned on by the request sets the reason
/// `manual`, turned off clears the reason and the failure streak (so the
/// worker starts afresh). Disabling fails the endpoint's pending deliveries
/// in the same statement, so a recovery brings them back.
static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH changed AS (
            UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, project_id = $6,
                   rate_limit_per_second = $7, disabled = $8,
                   disabled_reason = CASE WHEN NOT $8 THEN NULL WHEN $9 THEN 'manual' ELSE disabled_reason END,
                   failing_since = CASE WHEN disabled AND NOT $8 THEN NULL ELSE failing_since END,
                   paused_until = CASE WHEN disabled AND NOT $8 THEN NULL ELSE paused_until END,
                   updated_at = now()
             WHERE id = $1 AND client_id = $2
            RETURNING {COLUMNS}),
         failed AS (
            UPDATE webhook_endpoint_deliveries d SET status = 'failed', next_attempt_at = NULL
              FROM changed c
             WHERE d.endpoint_id = c.id AND c.disabled AND d.status = 'pending'
            RETURNING 1)
         SELECT {COLUMNS} FROM changed"
    )
});

/// Changes the client's endpoint `id` (locked by [`lock`]); `disable` is
/// whether the request asked for `disabled: true`.
pub async fn update(
    conn: &mut PgConnection,
    id: &ObjectId,
    client: &ObjectId,
    settings: &Settings,
    disable: bool,
) -> Result<Row, sqlx::Error> {
    with_settings(&UPDATE, id, client, settings)
        .bind(disable)
        .fetch_one(conn)
        .await
}

static DELETE: LazyLock<String> =
    LazyLock::new(|| format!("DELETE FROM webhook_endpoints WHERE id = $1 AND client_id = $2 RETURNING {COLUMNS}"));

/// Deletes the client's endpoint `id` (its deliveries with it); `None` when
/// there is none.
pub async fn delete(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as(&DELETE).bind(id).bind(client).fetch_optional(pool).await
}

const ROTATE: &str = "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,
                previous_secret_expires_at = now() + make_interval(secs => $4), updated_at = now()
          WHERE id = $1 AND client_id = $2
      RETURNING id";

/// A new sealed secret; the old one keeps signing for `overlap_seconds`.
/// `false` when the client has no endpoint `id`.
pub async fn rotate(
    pool: &PgPool,
    id: &ObjectId,
    client: &ObjectId,
    sealed_secret: &str,
    overlap_seconds: i64,
) -> Result<bool, sqlx::Error> {
    let rotated: Option<ObjectId> = sqlx::query_scalar(ROTATE)
        .bind(id)
        .bind(client)
        .bind(sealed_secret)
        .bind(overlap_seconds as f64)
        .fetch_optional(pool)
        .await?;
    Ok(rotated.is_some())
}

const DISABLED: &str = "SELECT disabled FROM webhook_endpoints WHERE id = $1 AND client_id = $2";

/// Whether the client's endpoint `id` is disabled; `None` when there is none.
pub async fn disabled(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(DISABLED)
        .bind(id)
        .bind(client)
        .fetch_optional(pool)
        .await
}

static OF_CLIENT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE client_id = $1 ORDER BY id DESC"));

/// Every endpoint of `client`, newest first (`otpctl webhooks endpoints`).
pub async fn of_client(pool: &PgPool, client: &ObjectId) -> Result<Vec<WebhookEndpoint>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&OF_CLIENT).bind(client).fetch_all(pool).await?;
    Ok(rows.into_iter().map(WebhookEndpoint::from).collect())
}

static ENABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE webhook_endpoints SET disabled = false, disabled_reason = NULL, failing_since = NULL,
                paused_until = NULL, updated_at = now()
          WHERE id = $1
      RETURNING {COLUMNS}"
    )
});

/// Re-enables endpoint `id`, whoever's it is (`otpctl webhooks enable`).
pub async fn enable(pool: &PgPool, id: &ObjectId) -> Result<Option<WebhookEndpoint>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&ENABLE).bind(id).fetch_optional(pool).await?;
    Ok(row.map(WebhookEndpoint::from))
}

pub fn statements() -> Statements {
    let mut statements = list::statements("webhook_endpoints", &LISTED);
    statements.extend([
        ("webhook_endpoints.insert".into(), INSERT.clone()),
        ("webhook_endpoints.lock".into(), LOCK.clone()),
        ("webhook_endpoints.project_owned".into(), PROJECT_OWNED.into()),
        ("webhook_endpoints.update".into(), UPDATE.clone()),
        ("webhook_endpoints.delete".into(), DELETE.clone()),
        ("webhook_endpoints.rotate".into(), ROTATE.into()),
        ("webhook_endpoints.disabled".into(), DISABLED.into()),
        ("webhook_endpoints.of_client".into(), OF_CLIENT.clone()),
        ("webhook_endpoints.enable".into(), ENABLE.clone()),
    ]);
    statements
}
