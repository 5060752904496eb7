//! The RabbitMQ layer: one place declares the topology, one connection per
//! process is supervised and re-established after any failure, publishes wait
//! for the broker's confirm, and consumers survive reconnects.

mod broker;
mod consumer;
pub mod dlq;
pub mod retry;
mod topology;

pub use broker::{connect_first, parse_url_list, Broker, BrokerUrl, PublishError, UrlListError};
pub use consumer::{consume, Handled};
pub use lapin::message::Delivery;
pub use lapin::BasicProperties;
pub use topology::Topology;

use lapin::types::{AMQPValue, FieldTable};

/// An integer header value, whatever integer type the publisher chose (or
/// digits in a string, as some tools send them).
pub fn integer(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongString(s) => s.to_string().parse().ok()?,
        _ => return None,
    })
}

/// The header `name` as a `u32` (absent, not an integer or out of range: `None`).
pub fn header_u32(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    integer(headers?.inner().get(name)?).and_then(|n| u32::try_from(n).ok())
}
