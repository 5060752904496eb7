//! The webhook attempt log as a client reads it (`webhook_deliveries`,
//! written by the webhook worker).

use super::list::{self, Filter, Listed};
use crate::envelope::Page;
use crate::error::ApiResult;
use crate::listing::Paging;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Statements;
use shared::ObjectId;
use sqlx::PgPool;
use utoipa::ToSchema;

/// One delivery attempt.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The event id (the `webhook-id` header), stable across attempts.
    pub event_id: String,
    /// `phone_validation_validated` or `phone_validation_failed`.
    #[serde(rename = "type")]
    pub event_type: String,
    #[sqlx(rename = "validation_id")]
    pub validation: ObjectId,
    pub url: String,
    /// Replays of the event after it was dead-lettered (0 before any).
    pub round: i32,
    /// 1 for the first attempt of a round.
    pub attempt: i32,
    #[serde(serialize_with = "shared::time::serialize")]
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when it did not answer.
    pub status_code: Option<i32>,
    pub latency_ms: Option<i32>,
    pub error: Option<String>,
    #[serde(serialize_with = "shared::time::serialize_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// `in_flight`, `delivered`, `retrying`, `gone`, `refused`, `dead_lettered` or `unscheduled`.
    pub outcome: String,
}

const LISTED: Listed = Listed {
    table: "webhook_deliveries",
    columns: "event_id, event_type, validation_id, url, round, attempt, attempted_at, \
    status_code, latency_ms, error, next_attempt_at, outcome",
    filters: &["client_id", "validation_id"],
};

const OWNED: &str = "SELECT EXISTS (SELECT 1 FROM phone_validations WHERE id = $1 AND client_id = $2)";

/// Whether the validation is the client's.
pub async fn owns_validation(pool: &PgPool, client: &ObjectId, validation: &ObjectId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(OWNED)
        .bind(validation)
        .bind(client)
        .fetch_one(pool)
        .await
}

/// A page of the attempts to deliver the events of `validation`.
pub async fn page(
    pool: &PgPool,
    client: &ObjectId,
    validation: &ObjectId,
    paging: Paging,
) -> ApiResult<Page<WebhookDelivery>> {
    let filter = Filter::client(client)?.eq("validation_id", Some(validation))?;
    list::page(pool, &LISTED, filter, paging).await
}

pub fn statements() -> Statements {
    let mut statements = list::statements("webhook_deliveries", &LISTED);
    statements.push(("webhook_deliveries.owned".into(), OWNED.into()));
    statements
}
