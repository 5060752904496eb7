//! The message log of webhook endpoints (docs/contract.md §13): events
//! newest first with each endpoint's delivery, one event's attempts, and
//! sending again: one event (`resend`), or everything an endpoint failed to
//! receive over a period (`recover`, e.g. after an outage).

use crate::auth::AuthClient;
use crate::envelope::{Envelope, List, Page, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ApiJson, RawPathId};
use crate::listing::ListQuery;
use crate::state::AppState;
use crate::store::webhook_endpoints;
use crate::store::webhook_messages::{self as store, MessageFilter, WebhookAttempt, WebhookMessage};
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::WebhookEventType;
use shared::ObjectId;
use utoipa::ToSchema;

/// How many deliveries were put back to `pending`, due now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    #[schema(minimum = 0)]
    pub queued: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendWebhookMessage {
    /// Only to this endpoint of the client's (which gets the event even if
    /// it did not before); absent: every enabled endpoint the event went to.
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{24}$")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RecoverWebhookEndpoint {
    /// RFC 3339: events that occurred at or after it.
    #[schema(value_type = String, format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, not before `since`: events that occurred before it (absent: up to now).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
}

/// An RFC 3339 instant; a `+` that a query string turned into a space is
/// read back as a `+`.
fn instant(raw: &str, field: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::invalid(field))
}

/// The client's endpoint `id`, enabled (recovering or resending to a
/// disabled endpoint would queue what it does not take).
async fn enabled_endpoint(app: &AppState, client: &ObjectId, raw: &str) -> ApiResult<ObjectId> {
    let id = path_id(raw, "webhookEndpoint")?;
    match webhook_endpoints::disabled(&app.pool, &id, client).await? {
        None => Err(ApiError::not_found("webhookEndpoint")),
        Some(true) => Err(ApiError::conflict("webhookEndpoint_disabled")),
        Some(false) => Ok(id),
    }
}

/// List the client's webhook events, newest first, with their deliveries.
#[utoipa::path(get, path = "/v2/webhook-messages", tag = "webhook messages", operation_id = "listWebhookMessages",
    params(
        ("page" = Option<i64>, Query, description = "1-based; a list reaches its first 10,000 rows (a page past them is empty)", minimum = 1, maximum = 10000),
        ("limit" = Option<i64>, Query, description = "Rows per page (default 10)", minimum = 1, maximum = 100),
        ("eventType" = Option<crate::webhook_events::EventTypeName>, Query, description = "Only events of this type"),
        ("endpoint" = Option<String>, Query, description = "Only events with a delivery to this endpoint", pattern = "^[0-9a-f]{24}$"),
        ("status" = Option<crate::store::webhook_messages::DeliveryStatus>, Query, description = "Only events with a delivery in this state (to `endpoint`, when given)"),
        ("since" = Option<String>, Query, description = "RFC 3339: events that occurred at or after it", format = DateTime),
        ("until" = Option<String>, Query, description = "RFC 3339: events that occurred before it", format = DateTime),
        ("validation" = Option<String>, Query, description = "Only events about this phone validation (their body's `object`); another client's gives none", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = List<WebhookMessage>, description = "A page of events"),
        (status = 400, description = "`invalid_page`, `invalid_limit`, `invalid_eventType`, `invalid_endpoint`, `invalid_status`, `invalid_since`, `invalid_until` or `invalid_validation`")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<WebhookMessage>> {
    let query = ListQuery::parse(query.as_deref())?;
    let paging = query.paging()?;
    let event_type = query
        .get("eventType")
        .map(|raw| WebhookEventType::parse(raw).ok_or_else(|| ApiError::invalid("eventType")))
        .transpose()?;
    let filter = MessageFilter {
        event_type: event_type.map(WebhookEventType::as_str),
        endpoint: query.id("endpoint")?,
        status: query.parsed("status")?,
        since: query.get("since").map(|raw| instant(raw, "since")).transpose()?,
        until: query.get("until").map(|raw| instant(raw, "until")).transpose()?,
        validation: query.id("validation")?,
    };
    Ok(store::page(&app.pool, &client, &filter, paging).await?)
}

/// Retrieve one webhook event with its deliveries.
#[utoipa::path(get, path = "/v2/webhook-messages/{eventId}", tag = "webhook messages", operation_id = "getWebhookMessage",
    params(("eventId" = String, Path, description = "The event's id (`webhook-id`)", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<WebhookMessage>, description = "The event"),
        (status = 404, description = "`webhookMessage_not_found`")),
    security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<WebhookMessage>> {
    let id = path_id(&id, "webhookMessage")?;
    let message = store::one(&app.pool, &client, &id).await?;
    message
        .map(Envelope)
        .ok_or_else(|| ApiError::not_found("webhookMessage"))
}

/// List the attempts to deliver one event, newest first.
#[utoipa::path(get, path = "/v2/webhook-messages/{eventId}/attempts", tag = "webhook messages", operation_id = "listWebhookMessageAttempts",
    params(("eventId" = String, Path, description = "The event's id (`webhook-id`)", pattern = "^[0-9a-f]{24}$"),
        ("page" = Option<i64>, Query, description = "1-based; a list reaches its first 10,000 rows (a page past them is empty)", minimum = 1, maximum = 10000),
        ("limit" = Option<i64>, Query, description = "Rows per page (default 10)", minimum = 1, maximum = 100)),
    responses(
        (status = 200, body = List<WebhookAttempt>, description = "A page of attempts"),
        (status = 400, description = "`invalid_page` or `invalid_limit`"),
        (status = 404, description = "`webhookMessage_not_found`")),
    security(("bearer" = [])))]
pub async fn attempts(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<WebhookAttempt>> {
    let paging = ListQuery::parse(query.as_deref())?.paging()?;
    let id = path_id(&id, "webhookMessage")?;
    if !store::exists(&app.pool, &client, &id).await? {
        return Err(ApiError::not_found("webhookMessage"));
    }
    Ok(store::attempts(&app.pool, &client, &id, paging).await?)
}

/// Send one event again, now, with the same `webhook-id`.
#[utoipa::path(post, path = "/v2/webhook-messages/{eventId}/resend", tag = "webhook messages", operation_id = "resendWebhookMessage",
    request_body = ResendWebhookMessage,
    params(("eventId" = String, Path, description = "The event's id (`webhook-id`)", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<Queued>, description = "How many deliveries were queued"),
        (status = 404, description = "`webhookMessage_not_found` or `webhookEndpoint_not_found`"),
        (status = 409, description = "`webhookEndpoint_disabled`: enable the endpoint first")),
    security(("bearer" = [])))]
pub async fn resend(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
    ApiJson(body): ApiJson<ResendWebhookMessage>,
) -> ApiResult<Envelope<Queued>> {
    let id = path_id(&id, "webhookMessage")?;
    if !store::exists(&app.pool, &client, &id).await? {
        return Err(ApiError::not_found("webhookMessage"));
    }
    let queued = match body.endpoint {
        Some(raw) => {
            let endpoint = enabled_endpoint(&app, &client, &raw).await?;
            store::resend_one(&app.pool, &client, &id, &endpoint).await?
        }
        None => store::resend_all(&app.pool, &client, &id).await?,
    };
    Ok(Envelope(Queued { queued }))
}

/// Send again everything an endpoint failed to receive from events that
/// occurred in `[since, until)` (after an outage).
#[utoipa::path(post, path = "/v2/webhook-endpoints/{id}/recover", tag = "webhook endpoints", operation_id = "recoverWebhookEndpoint",
    request_body = RecoverWebhookEndpoint,
    params(("id" = String, Path, description = "Webhook endpoint id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<Queued>, description = "How many deliveries were queued"),
        (status = 400, description = "`invalid_since` or `invalid_until` (not RFC 3339, or `until` before `since`)"),
        (status = 404, description = "`webhookEndpoint_not_found`"),
        (status = 409, description = "`MissingParameter`: `missing since`; or `webhookEndpoint_disabled`: enable the endpoint first")),
    security(("bearer" = [])))]
pub async fn recover(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
    ApiJson(body): ApiJson<RecoverWebhookEndpoint>,
) -> ApiResult<Envelope<Queued>> {
    let since = body.since.ok_or(ApiError::Missing(vec!["since"]))?;
    let since = instant(&since, "since")?;
    let until = body.until.map(|raw| instant(&raw, "until")).transpose()?;
    if until.is_some_and(|until| until < since) {
        return Err(ApiError::invalid("until"));
    }
    let endpoint = enabled_endpoint(&app, &client, &id).await?;
    let queued = store::recover(&app.pool, &client, &endpoint, since, until).await?;
    Ok(Envelope(Queued { queued }))
}
