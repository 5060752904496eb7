//! `GET /v2/webhook-event-types`: the types an endpoint can subscribe to,
//! each with its body's JSON Schema (`crate::webhook_events`).

use crate::auth::AuthClient;
use crate::envelope::{Envelope, Success};
use crate::error::ApiResult;
use serde::Serialize;
use utoipa::ToSchema;

/// One event type of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEventTypeInfo {
    #[schema(schema_with = crate::webhook_events::name_schema)]
    pub name: String,
    pub description: String,
    /// JSON Schema (2020-12) of the body POSTed for this type.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

/// List the webhook event types with their bodies' schemas.
#[utoipa::path(get, path = "/v2/webhook-event-types", tag = "webhook endpoints", operation_id = "listWebhookEventTypes",
    responses((status = 200, body = Success<Vec<WebhookEventTypeInfo>>, description = "Every event type")),
    security(("bearer" = [])))]
pub async fn list(AuthClient(_client): AuthClient) -> ApiResult<Envelope<&'static serde_json::Value>> {
    Ok(Envelope(crate::webhook_events::catalogue()))
}
