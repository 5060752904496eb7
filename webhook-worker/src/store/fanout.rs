//! Fan-out's statements (docs/contract.md §13): which endpoints a client
//! has, and one event's message with one delivery per matching endpoint,
//! written in one statement. Both are batched across the events that arrive
//! together; the write is idempotent (a redelivered event adds nothing).

use chrono::{DateTime, Utc};
use shared::batch::{Batcher, Duplicates, StoreError};
use shared::domain::WebhookEventType;
use shared::ObjectId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;

/// The enabled endpoints of some clients, with what they subscribe to.
const ENDPOINTS: &str = "SELECT client_id, id, event_types, project_id FROM webhook_endpoints
          WHERE client_id = ANY($1) AND NOT disabled";
/// The messages (the body as POSTed) and their deliveries, due now, to the
/// endpoints still enabled. A message already written (a redelivered event)
/// and its deliveries are left as they are.
const FAN_OUT: &str = "WITH messages AS (
            INSERT INTO webhook_messages (event_id, client_id, project_id, event_type, occurred_at, payload)
            SELECT m.event_id, m.client_id, m.project_id, m.event_type, m.occurred_at, m.payload::jsonb
              FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
                AS m(event_id, client_id, project_id, event_type, occurred_at, payload)
            ON CONFLICT (event_id) DO NOTHING
         ), deliveries AS (
            INSERT INTO webhook_endpoint_deliveries (event_id, endpoint_id, client_id, status, next_attempt_at)
            SELECT d.event_id, d.endpoint_id, d.client_id, 'pending', now()
              FROM unnest($7::text[], $8::text[], $9::text[]) AS d(event_id, endpoint_id, client_id)
              JOIN webhook_endpoints e ON e.id = d.endpoint_id AND NOT e.disabled
            ON CONFLICT (event_id, endpoint_id) DO NOTHING
         )
         SELECT unnest($1::text[])";

/// Batches in flight at once per statement.
const RUNNERS: usize = 2;

/// One endpoint, as fan-out filters on it.
#[derive(Clone, Debug)]
pub struct EndpointFilter {
    pub id: String,
    /// `None`: every type.
    pub event_types: Option<Vec<String>>,
    /// Only this project's events when set.
    pub project: Option<String>,
}

impl EndpointFilter {
    /// Whether an event of `kind` about `project` goes to this endpoint. An
    /// event whose project is unknown goes only to endpoints without one.
    pub fn wants(&self, kind: WebhookEventType, project: Option<&str>) -> bool {
        let typed = self
            .event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == kind.as_str()));
        let scoped = match &self.project {
            None => true,
            Some(wanted) => project == Some(wanted.as_str()),
        };
        typed && scoped
    }
}

/// One event's message and the endpoints it goes to.
pub struct NewMessage {
    pub client: ObjectId,
    pub project: Option<String>,
    pub kind: WebhookEventType,
    pub occurred_at: DateTime<Utc>,
    /// The body as it is POSTed.
    pub payload: String,
    pub endpoints: Vec<String>,
}

type Filters = Arc<Vec<EndpointFilter>>;

pub struct FanOutStore {
    endpoints: Batcher<ObjectId, (), Filters>,
    messages: Batcher<String, NewMessage, ()>,
}

impl FanOutStore {
    pub fn start(pool: PgPool) -> Self {
        let read = pool.clone();
        let endpoints = Batcher::start_with(RUNNERS, Duplicates::Share, move |clients, _| {
            load_endpoints(read.clone(), clients)
        });
        let messages = Batcher::start_with(RUNNERS, Duplicates::Share, move |events, messages| {
            fan_out(pool.clone(), events, messages)
        });
        Self { endpoints, messages }
    }

    /// The client's enabled endpoints (batched with other clients').
    pub async fn endpoints(&self, client: &ObjectId) -> Result<Filters, StoreError> {
        Ok(self.endpoints.submit(client.clone(), ()).await?.unwrap_or_default())
    }

    /// Writes the message and its deliveries (batched); returns once committed.
    pub async fn write(&self, event_id: &ObjectId, message: NewMessage) -> Result<(), StoreError> {
        self.messages.submit(event_id.as_str().to_owned(), message).await?;
        Ok(())
    }
}

async fn load_endpoints(pool: PgPool, clients: Vec<ObjectId>) -> Result<Vec<(ObjectId, Filters)>, sqlx::Error> {
    type Row = (ObjectId, String, Option<Vec<String>>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(ENDPOINTS).bind(&clients).fetch_all(&pool).await?;
    let mut by_client: HashMap<ObjectId, Vec<EndpointFilter>> = HashMap::new();
    for (client, id, event_types, project) in rows {
        by_client.entry(client).or_default().push(EndpointFilter {
            id,
            event_types,
            project,
        });
    }
    Ok(by_client
        .into_iter()
        .map(|(client, filters)| (client, Arc::new(filters)))
        .collect())
}

async fn fan_out(
    pool: PgPool,
    events: Vec<String>,
    messages: Vec<NewMessage>,
) -> Result<Vec<(String, ())>, sqlx::Error> {
    let (mut to_event, mut to_endpoint, mut to_client) = (Vec::new(), Vec::new(), Vec::new());
    for (event, message) in events.iter().zip(&messages) {
        for endpoint in &message.endpoints {
            to_event.push(event.as_str());
            to_endpoint.push(endpoint.as_str());
            to_client.push(message.client.as_str());
        }
    }
    let written: Vec<String> = sqlx::query_scalar(FAN_OUT)
        .bind(&events)
        .bind(messages.iter().map(|m| m.client.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.project.as_deref()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.occurred_at).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.payload.as_str()).collect::<Vec<_>>())
        .bind(&to_event)
        .bind(&to_endpoint)
        .bind(&to_client)
        .fetch_all(&pool)
        .await?;
    Ok(written.into_iter().map(|event| (event, ())).collect())
}

pub(super) fn statements() -> shared::db::Statements {
    [("webhooks.endpoints_of", ENDPOINTS), ("webhooks.fan_out", FAN_OUT)]
        .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(types: Option<&[&str]>, project: Option<&str>) -> EndpointFilter {
        EndpointFilter {
            id: "e".into(),
            event_types: types.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            project: project.map(str::to_owned),
        }
    }

    #[test]
    fn endpoints_filter_on_type_and_project() {
        use WebhookEventType::{FraudGuardBlocked, Sent, Validated};
        assert!(endpoint(None, None).wants(Sent, Some("p1")));
        assert!(endpoint(None, None).wants(FraudGuardBlocked, None));
        let typed = endpoint(Some(&["phone_validation_validated"]), None);
        assert!(typed.wants(Validated, Some("p1")));
        assert!(!typed.wants(Sent, Some("p1")));
        let scoped = endpoint(None, Some("p1"));
        assert!(scoped.wants(Sent, Some("p1")));
        assert!(!scoped.wants(Sent, Some("p2")));
        assert!(
            !scoped.wants(FraudGuardBlocked, None),
            "an unknown project matches no scoped endpoint"
        );
        assert!(!endpoint(Some(&[]), None).wants(Validated, None));
    }
}
