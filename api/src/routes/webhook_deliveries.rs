//! `GET /v2/webhook-deliveries?validation=<id>`: every attempt the webhook
//! worker made to deliver a validation's events, newest first, so a client can
//! see what reached its endpoint and what did not.

use crate::auth::AuthClient;
use crate::envelope::{List, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::ListQuery;
use crate::listing::{self, Filter};
use crate::AppState;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ObjectId;
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

const COLUMNS: &str = "event_id, event_type, validation_id, url, round, attempt, attempted_at, \
    status_code, latency_ms, error, next_attempt_at, outcome";

/// List a validation's webhook delivery attempts, newest first.
#[utoipa::path(get, path = "/v2/webhook-deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries",
    params(("validation" = String, Query, description = "Phone validation id", pattern = "^[0-9a-f]{24}$"),
        ("page" = Option<i64>, Query, description = "1-based; a list reaches its first 10,000 rows (a page past them is empty)", minimum = 1, maximum = 10000),
        ("limit" = Option<i64>, Query, description = "Rows per page (default 10)", minimum = 1, maximum = 100)),
    responses(
        (status = 200, body = List<WebhookDelivery>, description = "A page of delivery attempts"),
        (status = 400, description = "`invalid_page`, `invalid_limit` or `invalid_validation`"),
        (status = 404, description = "`phone_validation_not_found`"),
        (status = 409, description = "`MissingParameter`: `missing validation`")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<WebhookDelivery>> {
    let query = ListQuery::parse(query.as_deref())?;
    let paging = query.paging()?;
    let validation = query.id("validation")?.ok_or(ApiError::Missing(vec!["validation"]))?;
    let owned: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM phone_validations WHERE id = $1 AND client_id = $2)")
            .bind(&validation)
            .bind(&client)
            .fetch_one(&app.pool)
            .await?;
    if !owned {
        return Err(ApiError::not_found("phone_validation"));
    }
    let filter = Filter::client(&client)?.eq("validation_id", Some(&validation))?;
    listing::page(&app.pool, "webhook_deliveries", COLUMNS, filter, paging).await
}
