//! The lifecycle events of a validation for webhook endpoints
//! (docs/contract.md §13: `phone_validation_sent`, `_delivered`,
//! `_undelivered`), as SQL fragments the statements that record a send or a
//! receipt embed: the outbox row is written by the same statement as the
//! change, and only when the client has an enabled endpoint subscribed to
//! the type (and to the validation's project). With no endpoint the cost is
//! one probe of `webhook_endpoints_client_idx` per row.
//!
//! The body is [`crate::events::LifecycleEvent`]'s, built by PostgreSQL
//! from ids and a time minted here (`jsonb_build_object`), so the hot path
//! serializes nothing for a client that has no endpoint.

use crate::events::routing;
use crate::outbox::OutboxMessage;

/// `EXISTS` an enabled endpoint of `row`'s client (a validation's alias,
/// with `client_id` and `project_id`) subscribed to `event_type` (an SQL
/// text expression).
pub fn subscribed(row: &str, event_type: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM webhook_endpoints AS e
                  WHERE e.client_id = {row}.client_id AND NOT e.disabled
                    AND (e.event_types IS NULL OR {event_type} = ANY(e.event_types))
                    AND (e.project_id IS NULL OR e.project_id = {row}.project_id))"
    )
}

/// The event's body as `jsonb`: `{eventId, type, occurredAt, data: {_id}}`
/// from SQL expressions.
pub fn payload(event_id: &str, event_type: &str, occurred_at: &str, validation_id: &str) -> String {
    format!(
        "jsonb_build_object('eventId', {event_id}, 'type', {event_type}, 'occurredAt', {occurred_at},
                            'data', jsonb_build_object('_id', {validation_id}))"
    )
}

/// The routing key of an event type, as an SQL expression over `event_type`.
pub fn routing_key(event_type: &str) -> String {
    use crate::domain::WebhookEventType as Kind;
    format!(
        "CASE {event_type} WHEN '{}' THEN '{}' WHEN '{}' THEN '{}' WHEN '{}' THEN '{}' END",
        Kind::Sent.as_str(),
        routing::SENT,
        Kind::Delivered.as_str(),
        routing::DELIVERED,
        Kind::Undelivered.as_str(),
        routing::UNDELIVERED,
    )
}

/// `occurredAt` of the events a statement is about to write: now.
pub fn occurred_now() -> String {
    crate::time::format(&chrono::Utc::now())
}

/// The outbox row a statement returned (id, routing key, event id, body).
pub fn message(id: i64, routing_key: String, message_id: String, payload: String) -> OutboxMessage {
    OutboxMessage {
        id,
        routing_key,
        message_id,
        payload: payload.into_bytes(),
    }
}
