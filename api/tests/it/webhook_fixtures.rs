//! What the webhook endpoint and message tests arrange: endpoints made
//! through the API, and the rows the webhook worker would write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
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
    let kind = "phone_validation_validated";
    let event = message(app, kind, occurred_at, json!({"type": kind})).await;
    deliver(app, &event, endpoint, status, 2, None).await;
    event
}

/// Arranges a message of the client's: an event of `kind` whose body, as
/// POSTed, is `payload`.
pub async fn message(app: &TestApp, kind: &str, occurred_at: DateTime<Utc>, payload: Value) -> String {
    let event = ObjectId::new().to_string();
    sqlx::query(
        "INSERT INTO webhook_messages (event_id, client_id, event_type, occurred_at, payload)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&event)
    .bind(&app.client)
    .bind(kind)
    .bind(occurred_at)
    .bind(payload)
    .execute(&app.pool)
    .await
    .unwrap();
    event
}

/// Arranges the delivery of `event` to `endpoint`: in `status` after
/// `attempts`, the last one (now) answered `last_status_code`; a pending one
/// is due in a minute.
pub async fn deliver(
    app: &TestApp,
    event: &str,
    endpoint: &str,
    status: &str,
    attempts: i32,
    last_status_code: Option<i32>,
) {
    sqlx::query(
        "INSERT INTO webhook_endpoint_deliveries
                (event_id, endpoint_id, client_id, status, attempts, next_attempt_at, last_attempt_at, last_status_code)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'pending' THEN now() + interval '1 minute' END,
                 CASE WHEN $6::integer IS NULL THEN NULL ELSE now() END, $6)",
    )
    .bind(event)
    .bind(endpoint)
    .bind(&app.client)
    .bind(status)
    .bind(attempts)
    .bind(last_status_code)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Arranges an attempt to deliver `event` to `endpoint` at `URL`: an HTTP
/// `status` with its response `body`, or an `error`.
pub async fn attempt(
    app: &TestApp,
    event: &str,
    endpoint: &str,
    status: Option<i32>,
    error: Option<&str>,
    body: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO webhook_endpoint_attempts (event_id, endpoint_id, client_id, url, status_code, latency_ms, error, response_body)
         VALUES ($1, $2, $3, $4, $5, 12, $6, $7)",
    )
    .bind(event)
    .bind(endpoint)
    .bind(&app.client)
    .bind(URL)
    .bind(status)
    .bind(error)
    .bind(body)
    .execute(&app.pool)
    .await
    .unwrap();
}

pub async fn status_of(app: &TestApp, event: &str, endpoint: &str) -> (String, i32) {
    sqlx::query_as("SELECT status, attempts FROM webhook_endpoint_deliveries WHERE event_id = $1 AND endpoint_id = $2")
        .bind(event)
        .bind(endpoint)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}
