//! `GET /v2/webhook-deliveries?validation=<id>`: every attempt the webhook
//! worker made to deliver a validation's events, newest first, so a client can
//! see what reached its endpoint and what did not.

use crate::auth::AuthClient;
use crate::envelope::{List, Page};
use crate::error::{ApiError, ApiResult};
use crate::listing::{ListQuery, PagingParams};
use crate::state::AppState;
use crate::store::webhook_deliveries::{self, WebhookDelivery};
use axum::extract::{RawQuery, State};

/// List a validation's webhook delivery attempts, newest first.
#[utoipa::path(get, path = "/v2/webhook-deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries",
    params(("validation" = String, Query, description = "Phone validation id", pattern = "^[0-9a-f]{24}$"),
        PagingParams),
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
    let owned = webhook_deliveries::owns_validation(&app.pool, &client, &validation).await?;
    if !owned {
        return Err(ApiError::not_found("phone_validation"));
    }
    webhook_deliveries::page(&app.pool, &client, &validation, paging).await
}
