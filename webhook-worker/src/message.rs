//! A message on the webhook queue: which event of which validation (CONTRACT
//! §6) plus where it is in its schedule, carried in the retry headers every
//! worker shares (`shared::amqp::retry`), so a retry or a deferral is the
//! same bytes republished with new headers.
//!
//! Only the event's identity is read from the message: the validation it is
//! about is re-read from the database by id, so whoever can write to the
//! broker cannot get a client's signature on content of their choosing.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::BasicProperties;
use serde::Deserialize;
use shared::amqp::retry;
use shared::events::ValidationEventType;
use shared::ObjectId;

pub struct Message {
    pub event_id: ObjectId,
    pub kind: ValidationEventType,
    pub occurred_at: DateTime<Utc>,
    /// The validation the event is about.
    pub validation_id: ObjectId,
    pub payload: Vec<u8>,
    /// This attempt's number within the round, from 1.
    pub attempt: u32,
    /// Replays of a dead-lettered event (`otpctl dlq replay` adds one).
    pub round: u32,
    /// Times the message was deferred because its host was saturated.
    pub deferrals: u32,
}

/// The parts of a `phone_validation.*` event the worker trusts.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventRef {
    event_id: ObjectId,
    #[serde(rename = "type")]
    kind: ValidationEventType,
    occurred_at: DateTime<Utc>,
    data: ValidationRef,
}

#[derive(Deserialize)]
struct ValidationRef {
    #[serde(rename = "_id")]
    id: ObjectId,
}

/// The message is not a validation event: it can never be delivered.
#[derive(Debug, thiserror::Error)]
#[error("not a phone_validation event: {0}")]
pub struct Undecodable(#[from] serde_json::Error);

impl Message {
    pub fn decode(data: &[u8], properties: &BasicProperties) -> Result<Self, Undecodable> {
        let event: EventRef = serde_json::from_slice(data)?;
        Ok(Self {
            event_id: event.event_id,
            kind: event.kind,
            occurred_at: event.occurred_at,
            validation_id: event.data.id,
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
