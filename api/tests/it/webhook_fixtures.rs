//! What the webhook endpoint and message tests arrange: endpoints made
//! through the API, and the rows the webhook worker would write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use shared::ObjectId;
use testkit::{Response, TestApp};

/// A public IP literal: accepted without DNS, never connected to here.
pub const URL: &str = "https://8.8.8.8/hooks";

pub async fn create(app: &TestApp, body: Value) -> Response {
    app.post("/v2/webhook-endpoints", body).await
}

/// Creates an endpoint and returns its id.
pub async fn endpoint(app: &TestApp, body: Value) -> String {
    let created = create(app, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.data()["_id"].as_str().unwrap().to_owned()
}

/// Arranges a message with a delivery to `endpoint` in `status`.
pub async fn delivery(app: &TestApp, endpoint: &str, status: &str, occurred_at: DateTime<Utc>) -> String {
    let event = ObjectId::new().to_string();
    sqlx::query(
        "INSERT INTO webhook_messages (event_id, client_id, event_type, occurred_at, payload)
         VALUES ($1, $2, 'phone_validation_validated', $3, '{\"type\": \"phone_validation_validated\"}')
         ON CONFLICT DO NOTHING",
    )
    .bind(&event)
    .bind(&app.client)
    .bind(occurred_at)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_endpoint_deliveries (event_id, endpoint_id, client_id, status, attempts, next_attempt_at)
         VALUES ($1, $2, $3, $4, 2, now() + interval '1 minute')",
    )
    .bind(&event)
    .bind(endpoint)
    .bind(&app.client)
    .bind(status)
    .execute(&app.pool)
    .await
    .unwrap();
    event
}

pub async fn status_of(app: &TestApp, event: &str, endpoint: &str) -> (String, i32) {
    sqlx::query_as("SELECT status, attempts FROM webhook_endpoint_deliveries WHERE event_id = $1 AND endpoint_id = $2")
        .bind(event)
        .bind(endpoint)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}
