//! A message on the webhook queue: the event (CONTRACT §6) plus where it is
//! in its schedule, carried in the retry headers every worker shares
//! (`shared::amqp::retry`), so a retry or a deferral is the same bytes
//! republished with new headers.

use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::BasicProperties;
use shared::amqp::retry;
use shared::events::ValidationEvent;

pub struct Message {
    pub event: ValidationEvent,
    pub payload: Vec<u8>,
    /// This attempt's number within the round, from 1.
    pub attempt: u32,
    /// Replays of a dead-lettered event (`otpctl dlq replay` adds one).
    pub round: u32,
    /// Times the message was deferred because its host was saturated.
    pub deferrals: u32,
}

/// The message is not a validation event: it can never be delivered.
#[derive(Debug, thiserror::Error)]
#[error("not a phone_validation event: {0}")]
pub struct Undecodable(#[from] serde_json::Error);

impl Message {
    pub fn decode(data: &[u8], properties: &BasicProperties) -> Result<Self, Undecodable> {
        let event: ValidationEvent = serde_json::from_slice(data)?;
        Ok(Self {
            event,
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
            .with_message_id(self.event.event_id.as_str().into())
            .with_headers(headers)
    }
}
