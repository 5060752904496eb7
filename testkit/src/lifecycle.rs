//! Arranging and observing lifecycle events (docs/contract.md §13):
//! validations made to expire in bulk (endpoints are arranged with
//! `webhook_endpoints::Endpoint`), and the events the relay published, read off the
//! `otp.webhooks` queue with their routing keys.

use crate::api::TestApp;
use serde_json::Value;
use sqlx::PgPool;

/// `n` copies of validation `template` (status `status`, other phones),
/// expired `seconds_ago` seconds ago, written with one set-based statement;
/// returns their ids.
pub async fn expired_copies(pool: &PgPool, template: &str, n: i64, status: &str, seconds_ago: f64) -> Vec<String> {
    sqlx::query_scalar(
        "INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, status, country_code, phone,
             phone_gateway, validation_method, type, otp_length, expires_at, max_attempts, language)
         SELECT substr(md5(random()::text || g::text), 1, 24), t.client_id, t.project_id, t.project_flow_id, $3,
                t.country_code, (70000000 + g)::text, t.phone_gateway, t.validation_method, t.type, t.otp_length,
                now() - make_interval(secs => $4), t.max_attempts, t.language
           FROM phone_validations AS t, generate_series(1, $2) AS g
          WHERE t.id = $1
         RETURNING id",
    )
    .bind(template)
    .bind(n)
    .bind(status)
    .bind(seconds_ago)
    .fetch_all(pool)
    .await
    .expect("expired copies")
}

/// Moves a validation's expiry `seconds_ago` seconds into the past.
pub async fn expire(pool: &PgPool, id: &str, seconds_ago: f64) {
    sqlx::query("UPDATE phone_validations SET expires_at = now() - make_interval(secs => $2) WHERE id = $1")
        .bind(id)
        .bind(seconds_ago)
        .execute(pool)
        .await
        .expect("expire a validation");
}

/// One event as published: its routing key and body.
#[derive(Clone, Debug)]
pub struct Published {
    pub routing_key: String,
    pub body: Value,
}

impl Published {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// The validation it is about (`data._id`).
    pub fn validation(&self) -> &str {
        self.body["data"]["_id"].as_str().unwrap_or_default()
    }
}

/// Once the outbox is empty (every event confirmed), takes every event
/// waiting on the `otp.webhooks` queue (no webhook worker runs in these
/// tests), each once: the outbox publishes at least once, and a second copy
/// of an event carries the same `eventId` (consumers drop it), so the copies
/// are dropped here too and a duplicate *event* still shows.
pub async fn published(app: &TestApp) -> Vec<Published> {
    app.wait_outbox_empty().await;
    let mut seen = std::collections::HashSet::new();
    crate::infra::drain(&app.amqp, &app.topology.webhook_queue())
        .await
        .into_iter()
        .map(|m| Published {
            routing_key: m.delivery.routing_key.to_string(),
            body: serde_json::from_slice(&m.delivery.data).expect("a JSON event"),
        })
        .filter(|event| seen.insert(event.body["eventId"].as_str().unwrap_or_default().to_owned()))
        .collect()
}
