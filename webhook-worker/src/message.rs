//! A message on the webhook queue: the event (CONTRACT §6) plus where it is
//! in its schedule, carried in AMQP headers so a retry or a deferral is the
//! same bytes republished with new headers.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use shared::amqp::header_u32;
use shared::events::ValidationEvent;

/// Attempt number within the round, from 1.
pub const ATTEMPT: &str = "x-attempt";
/// Replays of a dead-lettered event (`otpctl dlq replay` adds one).
pub const ROUND: &str = "x-round";
/// Times the message was deferred because its host was saturated.
pub const DEFERRALS: &str = "x-deferrals";

pub struct Message {
    pub event: ValidationEvent,
    pub payload: Vec<u8>,
    pub attempt: u32,
    pub round: u32,
    pub deferrals: u32,
}

/// The message is not a validation event: it can never be delivered.
#[derive(Debug, thiserror::Error)]
#[error("not a phone_validation event: {0}")]
pub struct Undecodable(#[from] serde_json::Error);

impl Message {
    pub fn decode(data: &[u8], properties: &BasicProperties) -> Result<Self, Undecodable> {
        let event: ValidationEvent = serde_json::from_slice(data)?;
        let headers = properties.headers().as_ref();
        Ok(Self {
            event,
            payload: data.to_vec(),
            attempt: header_u32(headers, ATTEMPT).unwrap_or(1).max(1),
            round: header_u32(headers, ROUND).unwrap_or(0),
            deferrals: header_u32(headers, DEFERRALS).unwrap_or(0),
        })
    }

    /// Properties for republishing with the given schedule position.
    pub fn properties(&self, attempt: u32, deferrals: u32, extra: &[(&str, String)]) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
        headers.insert(ROUND.into(), AMQPValue::LongLongInt(i64::from(self.round)));
        headers.insert(DEFERRALS.into(), AMQPValue::LongLongInt(i64::from(deferrals)));
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
