//! Fan-out (docs/contract.md §13): an event consumed from the webhook
//! queue becomes one message (the body as POSTed, built as `body.rs` builds
//! it from the object read now) and one pending delivery per enabled
//! endpoint of its client that subscribes to its type and project. Both are
//! written in one statement, batched with the other events that arrive
//! together; the endpoint loop (`endpoints/`) delivers them from PostgreSQL.

use crate::body::{WebhookBody, WebhookObject};
use crate::event::Message;
use crate::store::{FanOutStore, NewMessage, StoreError};
use shared::ObjectId;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct FanOut {
    store: FanOutStore,
    /// Wakes this worker's endpoint loop when deliveries were written.
    wake: Arc<Notify>,
}

/// What an event is about, for fan-out.
pub struct About<'a> {
    pub object: &'a WebhookObject,
    pub client: &'a ObjectId,
    pub project: Option<&'a str>,
}

impl FanOut {
    pub fn new(store: FanOutStore, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Writes the event's message and deliveries, if any endpoint wants it;
    /// how many deliveries. Idempotent: a redelivered event adds nothing.
    pub async fn fan_out(&self, message: &Message, about: About<'_>) -> Result<usize, StoreError> {
        let kind = message.kind.webhook_type();
        let endpoints: Vec<String> = self
            .store
            .endpoints(about.client)
            .await?
            .iter()
            .filter(|endpoint| endpoint.wants(kind, about.project))
            .map(|endpoint| endpoint.id.clone())
            .collect();
        if endpoints.is_empty() {
            return Ok(0);
        }
        let body = WebhookBody {
            kind: kind.as_str(),
            object: about.object,
            event_id: &message.event_id,
            occurred_at: message.occurred_at,
        };
        // Serializing plain data into a string cannot fail.
        let payload = serde_json::to_string(&body).unwrap_or_default();
        let count = endpoints.len();
        let new = NewMessage {
            client: about.client.clone(),
            project: about.project.map(str::to_owned),
            kind,
            occurred_at: message.occurred_at,
            payload,
            endpoints,
        };
        self.store.write(&message.event_id, new).await?;
        metrics::counter!("webhook_fanout_deliveries_total").increment(count as u64);
        self.wake.notify_one();
        Ok(count)
    }
}
