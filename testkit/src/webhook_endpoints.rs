//! Webhook endpoints (docs/contract.md §13) for the worker's tests and the
//! bench: endpoints arranged as rows (their secrets sealed as the API seals
//! them: the endpoint id as associated data), events published as their
//! producers publish them, and what deliveries and attempts came to.

use serde_json::Value;
use shared::amqp::Topology;
use shared::ObjectId;
use sqlx::PgPool;

/// An endpoint to arrange.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub client: ObjectId,
    pub url: String,
    pub secret: String,
    /// `None`: every type.
    pub event_types: Option<Vec<String>>,
    pub project: Option<String>,
    pub rate_limit_per_second: Option<i32>,
    pub disabled: bool,
}

impl Endpoint {
    /// An endpoint of `client` for every event, signed with `secret`.
    pub fn new(client: &ObjectId, url: &str, secret: &str) -> Self {
        Self {
            client: client.clone(),
            url: url.to_owned(),
            secret: secret.to_owned(),
            event_types: None,
            project: None,
            rate_limit_per_second: None,
            disabled: false,
        }
    }

    /// An endpoint of `client` for every event, at a receiver nothing
    /// delivers to (the dispatcher's tests look only at what is published).
    pub fn at_rest(client: &ObjectId) -> Self {
        Self::new(client, "https://hooks.example.com/otp", "any secret")
    }

    pub fn types(mut self, types: &[&str]) -> Self {
        self.event_types = Some(types.iter().map(|t| (*t).to_owned()).collect());
        self
    }

    pub fn project(mut self, project: &str) -> Self {
        self.project = Some(project.to_owned());
        self
    }

    pub fn rate_limit(mut self, per_second: i32) -> Self {
        self.rate_limit_per_second = Some(per_second);
        self
    }

    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// Inserts the endpoint; returns its id.
    pub async fn insert(&self, pool: &PgPool) -> String {
        let id = ObjectId::new().to_string();
        let sealed = crate::api::webhook_secret_keys()
            .seal(&id, &self.secret)
            .expect("seal the secret");
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, client_id, url, event_types, project_id, rate_limit_per_second,
                    disabled, secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&self.client)
        .bind(&self.url)
        .bind(&self.event_types)
        .bind(&self.project)
        .bind(self.rate_limit_per_second)
        .bind(self.disabled)
        .bind(sealed)
        .execute(pool)
        .await
        .expect("insert an endpoint");
        id
    }
}

/// Rotates an endpoint's secret as the API does: the old one keeps signing until `overlap_secs` from now.
pub async fn rotate(pool: &PgPool, endpoint: &str, new_secret: &str, overlap_secs: f64) {
    let sealed = crate::api::webhook_secret_keys()
        .seal(endpoint, new_secret)
        .expect("seal the secret");
    sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,
                previous_secret_expires_at = now() + make_interval(secs => $3) WHERE id = $1",
    )
    .bind(endpoint)
    .bind(sealed)
    .bind(overlap_secs)
    .execute(pool)
    .await
    .expect("rotate the secret");
}

/// One delivery's state: (status, attempts).
pub async fn delivery(pool: &PgPool, event_id: &str, endpoint: &str) -> Option<(String, i32)> {
    sqlx::query_as("SELECT status, attempts FROM webhook_endpoint_deliveries WHERE event_id = $1 AND endpoint_id = $2")
        .bind(event_id)
        .bind(endpoint)
        .fetch_optional(pool)
        .await
        .expect("read a delivery")
}

/// An endpoint's deliveries by status: (status, count).
pub async fn statuses(pool: &PgPool, endpoint: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT status, count(*) FROM webhook_endpoint_deliveries WHERE endpoint_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(endpoint)
    .fetch_all(pool)
    .await
    .expect("count deliveries")
}

/// An endpoint's attempts, oldest first: (event id, status code, error, response body).
pub async fn attempts(pool: &PgPool, endpoint: &str) -> Vec<(String, Option<i32>, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT event_id, status_code, error, response_body FROM webhook_endpoint_attempts
          WHERE endpoint_id = $1 ORDER BY id",
    )
    .bind(endpoint)
    .fetch_all(pool)
    .await
    .expect("read attempts")
}

/// The stored message of an event: (event type, project, payload).
pub async fn message(pool: &PgPool, event_id: &str) -> Option<(String, Option<String>, Value)> {
    sqlx::query_as("SELECT event_type, project_id, payload FROM webhook_messages WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(pool)
        .await
        .expect("read a message")
}

/// Sets a delivery back to pending, due now, as the API's resend does.
pub async fn resend(pool: &PgPool, event_id: &str, endpoint: &str) {
    sqlx::query(
        "UPDATE webhook_endpoint_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()
          WHERE event_id = $1 AND endpoint_id = $2",
    )
    .bind(event_id)
    .bind(endpoint)
    .execute(pool)
    .await
    .expect("resend a delivery");
}

/// Publishes a lifecycle event (`phone_validation_sent`, …) about
/// `validation` to the events exchange, as its producer's outbox relay
/// would; returns its event id.
pub async fn publish_lifecycle(
    amqp: &lapin::Connection,
    topology: &Topology,
    kind: shared::domain::WebhookEventType,
    validation: &str,
) -> String {
    use shared::events::Event;
    let event = shared::events::LifecycleEvent::new(kind, ObjectId::parse(validation).expect("a validation id"));
    let channel = amqp.create_channel().await.expect("a channel");
    channel.confirm_select(Default::default()).await.expect("confirms");
    channel
        .basic_publish(
            topology.exchange().as_str().into(),
            event.routing_key().into(),
            Default::default(),
            &serde_json::to_vec(&event).expect("an event"),
            lapin::BasicProperties::default()
                .with_message_id(event.event_id().into())
                .with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    let _ = channel.close(200, "published".into()).await;
    event.event_id.to_string()
}

/// Waits until everything under way is done: the outbox published, the
/// webhook queue empty and no delivery pending.
pub async fn wait_settled(env: &crate::webhooks::TestEnv, timeout: std::time::Duration) {
    env.app.wait_outbox_empty().await;
    crate::infra::eventually(timeout, "every delivery to settle", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_endpoint_deliveries WHERE status = 'pending'")
                .fetch_one(&env.app.pool)
                .await
                .expect("count pending deliveries");
        let queued = env.ready_count(&env.webhook_queue()).await;
        (pending == 0 && queued == 0).then_some(())
    })
    .await;
}
