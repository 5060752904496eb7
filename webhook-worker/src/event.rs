//! A message on the webhook queue: which event of which validation (docs/contract.md
//! §6) plus where it is in its schedule, carried in the retry headers every
//! worker shares (`shared::amqp::retry`), so a retry or a deferral is the
//! same bytes republished with new headers.
//!
//! Only the event's identity is read from the message: the validation (or
//! fraud-guard block) it is about is re-read from the database by id, so
//! whoever can write to the broker cannot get a client's signature on
//! content of their choosing.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::BasicProperties;
use serde::Deserialize;
use shared::amqp::retry;
use shared::domain::WebhookEventType;
use shared::events::{FraudGuardBlocked, ValidationEventType};
use shared::ObjectId;

/// What an event is about, and so where its object is read from; read from
/// the event's `type`, a name in the endpoints' catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "WebhookEventType")]
pub enum EventKind {
    /// `phone_validation_validated` / `phone_validation_failed`: a validation.
    Validation(ValidationEventType),
    /// `fraud_guard_blocked`: a block of the fraud guard.
    FraudGuardBlocked,
    /// `phone_validation_sent` / `_delivered` / `_undelivered`: a validation,
    /// for webhook endpoints only (docs/contract.md §13), never to a `webhookUrl`.
    Lifecycle(WebhookEventType),
}

impl From<WebhookEventType> for EventKind {
    fn from(kind: WebhookEventType) -> Self {
        match kind {
            WebhookEventType::Validated => EventKind::Validation(ValidationEventType::Validated),
            WebhookEventType::Failed => EventKind::Validation(ValidationEventType::Failed),
            WebhookEventType::FraudGuardBlocked => EventKind::FraudGuardBlocked,
            WebhookEventType::Sent | WebhookEventType::Delivered | WebhookEventType::Undelivered => {
                EventKind::Lifecycle(kind)
            }
        }
    }
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Validation(kind) => kind.as_str(),
            EventKind::FraudGuardBlocked => FraudGuardBlocked::TYPE,
            EventKind::Lifecycle(kind) => kind.as_str(),
        }
    }

    /// The event's type in the endpoints' catalogue (what `eventTypes` filters on).
    pub fn webhook_type(self) -> WebhookEventType {
        match self {
            EventKind::Validation(ValidationEventType::Validated) => WebhookEventType::Validated,
            EventKind::Validation(ValidationEventType::Failed) => WebhookEventType::Failed,
            EventKind::FraudGuardBlocked => WebhookEventType::FraudGuardBlocked,
            EventKind::Lifecycle(kind) => kind,
        }
    }
}

pub struct Message {
    pub event_id: ObjectId,
    pub kind: EventKind,
    pub occurred_at: DateTime<Utc>,
    /// The validation (or block) the event is about.
    pub subject_id: ObjectId,
    pub payload: Vec<u8>,
    /// This attempt's number within the round, from 1.
    pub attempt: u32,
    /// Replays of a dead-lettered event (`otpctl dlq replay` adds one).
    pub round: u32,
    /// Times the message was deferred because its host was saturated.
    pub deferrals: u32,
    pub hint: Hint,
}

/// The parts of an event the worker trusts.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventRef {
    event_id: ObjectId,
    #[serde(rename = "type")]
    kind: EventKind,
    occurred_at: DateTime<Utc>,
    data: SubjectRef,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubjectRef {
    #[serde(rename = "_id")]
    id: ObjectId,
    // Read leniently (any JSON): they only make a hint, never a refusal.
    #[serde(default)]
    webhook_url: serde_json::Value,
    #[serde(default)]
    client: serde_json::Value,
    #[serde(default)]
    project_flow: serde_json::Value,
}

/// Where the event says it goes, as published: used only to put off a
/// delivery to a host that is not answering before any database work is
/// done for it. What is delivered, and where, is read from the database.
#[derive(Debug, Default, PartialEq)]
pub struct Hint {
    pub own_url: Option<String>,
    pub client: Option<ObjectId>,
    pub flow: Option<ObjectId>,
}

impl Hint {
    fn from(subject: &SubjectRef) -> Self {
        let id = |value: &serde_json::Value| value.as_str().and_then(|s| ObjectId::parse(s).ok());
        Self {
            own_url: subject.webhook_url.as_str().map(str::to_owned),
            client: id(&subject.client),
            flow: id(&subject.project_flow),
        }
    }
}

/// The message is not an event the worker knows: it can never be delivered.
#[derive(Debug, thiserror::Error)]
#[error("not a webhook event: {0}")]
pub struct Undecodable(#[from] serde_json::Error);

impl Message {
    pub fn decode(data: &[u8], properties: &BasicProperties) -> Result<Self, Undecodable> {
        let event: EventRef = serde_json::from_slice(data)?;
        let hint = Hint::from(&event.data);
        Ok(Self {
            hint,
            event_id: event.event_id,
            kind: event.kind,
            occurred_at: event.occurred_at,
            subject_id: event.data.id,
            payload: data.to_vec(),
            attempt: retry::attempts(properties).saturating_add(1),
            round: retry::counter(properties, retry::ROUND),
            deferrals: retry::counter(properties, retry::DEFERRALS),
        })
    }

    /// Properties for republishing: `attempts` made so far, `deferrals`,
    /// and any `extra` headers (why it was dead-lettered).
    pub fn properties(&self, attempts: u32, deferrals: u32, extra: &[(&str, String)]) -> BasicProperties {
        let mut headers = retry::headers(attempts, deferrals, self.round);
        for (name, value) in extra {
            headers.insert(
                ShortString::from(*name),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        BasicProperties::default()
            .with_message_id(self.event_id.as_str().into())
            .with_headers(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_of_event_decode() {
        let validated = br#"{"eventId":"65a1b2c3d4e5f6a7b8c9d0e1","type":"phone_validation_validated",
            "occurredAt":"2026-01-01T00:00:00Z","data":{"_id":"65a1b2c3d4e5f6a7b8c9d0e2","status":"validated"}}"#;
        let message = Message::decode(validated, &BasicProperties::default()).unwrap();
        assert_eq!(message.kind, EventKind::Validation(ValidationEventType::Validated));
        assert_eq!(message.subject_id.as_str(), "65a1b2c3d4e5f6a7b8c9d0e2");

        let blocked = serde_json::to_vec(&FraudGuardBlocked::new(ObjectId::new())).unwrap();
        let message = Message::decode(&blocked, &BasicProperties::default()).unwrap();
        assert_eq!(message.kind.as_str(), "fraud_guard_blocked");

        assert_eq!(message.hint, Hint::default());

        let sent = serde_json::to_vec(&shared::events::LifecycleEvent::new(
            WebhookEventType::Sent,
            ObjectId::new(),
        ))
        .unwrap();
        let message = Message::decode(&sent, &BasicProperties::default()).unwrap();
        assert_eq!(message.kind, EventKind::Lifecycle(WebhookEventType::Sent));
        assert_eq!(message.kind.as_str(), "phone_validation_sent");
        for kind in WebhookEventType::ALL {
            let body = format!(
                r#"{{"eventId":"65a1b2c3d4e5f6a7b8c9d0e1","type":"{kind}","occurredAt":"2026-01-01T00:00:00Z","data":{{"_id":"65a1b2c3d4e5f6a7b8c9d0e2"}}}}"#
            );
            let message = Message::decode(body.as_bytes(), &BasicProperties::default()).unwrap();
            assert_eq!(message.kind.webhook_type(), kind);
            assert_eq!(message.kind.as_str(), kind.as_str());
        }

        let unknown = br#"{"eventId":"65a1b2c3d4e5f6a7b8c9d0e1","type":"something_else",
            "occurredAt":"2026-01-01T00:00:00Z","data":{"_id":"65a1b2c3d4e5f6a7b8c9d0e2"}}"#;
        assert!(Message::decode(unknown, &BasicProperties::default()).is_err());
    }

    #[test]
    fn the_hint_is_read_leniently() {
        let hinted = br#"{"eventId":"65a1b2c3d4e5f6a7b8c9d0e1","type":"phone_validation_validated",
            "occurredAt":"2026-01-01T00:00:00Z","data":{"_id":"65a1b2c3d4e5f6a7b8c9d0e2",
            "webhookUrl":"https://hooks.example.com/a","client":"65a1b2c3d4e5f6a7b8c9d0e3","projectFlow":"65a1b2c3d4e5f6a7b8c9d0e4"}}"#;
        let message = Message::decode(hinted, &BasicProperties::default()).unwrap();
        assert_eq!(message.hint.own_url.as_deref(), Some("https://hooks.example.com/a"));
        assert_eq!(message.hint.client.unwrap().as_str(), "65a1b2c3d4e5f6a7b8c9d0e3");
        assert_eq!(message.hint.flow.unwrap().as_str(), "65a1b2c3d4e5f6a7b8c9d0e4");

        let odd = br#"{"eventId":"65a1b2c3d4e5f6a7b8c9d0e1","type":"phone_validation_validated",
            "occurredAt":"2026-01-01T00:00:00Z","data":{"_id":"65a1b2c3d4e5f6a7b8c9d0e2",
            "webhookUrl":7,"client":"not-an-id","projectFlow":null}}"#;
        let message = Message::decode(odd, &BasicProperties::default()).expect("a bad hint refuses nothing");
        assert_eq!(message.hint, Hint::default());
    }
}
