//! Dead-letter queues: list what is parked there and replay it into the work
//! queue with a fresh schedule, for the webhook queue and the dispatcher's
//! alike (`otpctl dlq`, and the webhook worker's tests).

use super::{integer, retry};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation};
use serde_json::{json, Value};

/// Headers that count or explain earlier attempts; a replay drops them.
fn is_history(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == retry::ATTEMPTS
        || name == retry::DEFERRALS
        || name == "x-attempt"
        || name == "x-dispatch-attempts"
        || name == "x-death"
        || name == "x-delivery-count"
        || name.starts_with("x-first-death")
        || name.starts_with("x-last-")
        || name.starts_with("x-dead-letter")
        || name.starts_with("x-dead-lettered")
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("RabbitMQ error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not accept the replayed message {0:?}; it stays in the dead-letter queue")]
    NotConfirmed(Option<String>),
}

/// Up to `limit` messages of `dlq`, as JSON, left in the queue.
pub async fn list(channel: &Channel, dlq: &str, limit: usize) -> Result<Vec<Value>, DlqError> {
    let mut listed = Vec::new();
    let mut tags = Vec::new();
    while listed.len() < limit {
        let Some(message) = channel.basic_get(dlq.into(), BasicGetOptions { no_ack: false }).await? else {
            break;
        };
        let delivery = &message.delivery;
        tags.push(delivery.delivery_tag);
        let body = serde_json::from_slice::<Value>(&delivery.data)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&delivery.data).into_owned()));
        listed.push(json!({
            "messageId": delivery.properties.message_id().as_ref().map(|id| id.to_string()),
            "routingKey": delivery.routing_key.to_string(),
            "headers": headers_json(delivery.properties.headers().as_ref()),
            "body": body,
        }));
    }
    for tag in tags {
        channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                },
            )
            .await?;
    }
    Ok(listed)
}

/// Moves up to `limit` messages from `dlq` to `work_queue`, each with its
/// attempt history removed and its round counter raised; a message is
/// removed from `dlq` only once RabbitMQ confirmed its copy. Returns the
/// replayed message ids.
pub async fn replay(channel: &Channel, dlq: &str, work_queue: &str, limit: usize) -> Result<Vec<Value>, DlqError> {
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut replayed = Vec::new();
    while replayed.len() < limit {
        let Some(message) = channel.basic_get(dlq.into(), BasicGetOptions { no_ack: false }).await? else {
            break;
        };
        let delivery = &message.delivery;
        let message_id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
        let properties = fresh_properties(&delivery.properties);
        let confirm = channel
            .basic_publish(
                "".into(),
                work_queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        if !matches!(confirm, Confirmation::Ack(None)) {
            let _ = channel
                .basic_nack(
                    delivery.delivery_tag,
                    BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    },
                )
                .await;
            return Err(DlqError::NotConfirmed(message_id));
        }
        channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await?;
        replayed.push(json!({"messageId": message_id}));
    }
    Ok(replayed)
}

/// The message's properties with its history dropped and its round raised.
fn fresh_properties(old: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    let mut round = 0i64;
    if let Some(table) = old.headers() {
        for (name, value) in table.inner() {
            if name.as_str() == retry::ROUND {
                round = integer(value).unwrap_or(0);
            } else if !is_history(name.as_str()) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    headers.insert(retry::ROUND.into(), AMQPValue::LongLongInt(round.saturating_add(1)));
    let mut properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(id) = old.message_id() {
        properties = properties.with_message_id(id.clone());
    }
    if let Some(content_type) = old.content_type() {
        properties = properties.with_content_type(content_type.clone());
    }
    properties
}

fn headers_json(headers: Option<&FieldTable>) -> Value {
    let mut map = serde_json::Map::new();
    if let Some(table) = headers {
        for (name, value) in table.inner() {
            map.insert(name.to_string(), value_json(value));
        }
    }
    Value::Object(map)
}

fn value_json(value: &AMQPValue) -> Value {
    if let Some(number) = integer(value).filter(|_| !matches!(value, AMQPValue::LongString(_))) {
        return json!(number);
    }
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::LongString(s) => json!(long_string(s)),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(value_json).collect()),
        AMQPValue::FieldTable(table) => headers_json(Some(table)),
        other => json!(format!("{other:?}")),
    }
}

fn long_string(s: &LongString) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}
