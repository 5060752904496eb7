//! The RabbitMQ layer: one place declares the topology, one connection per
//! process is supervised and re-established after any failure, publishes wait
//! for the broker's confirm, and consumers survive reconnects.

mod broker;
mod consumer;
pub mod dlq;
mod topology;

pub use broker::{Broker, PublishError};
pub use consumer::{consume, Handled};
pub use lapin::message::Delivery;
pub use lapin::BasicProperties;
pub use topology::Topology;
