//! What every OTP process needs: the domain types and their parsers, the
//! configuration helpers, PostgreSQL access, the RabbitMQ layer (topology,
//! publisher with confirms, consumers that survive reconnects), the events
//! that travel between processes, the transactional outbox, and telemetry.

pub mod amqp;
pub mod batch;
pub mod config;
pub mod db;
pub mod domain;
pub mod events;
pub mod http;
pub mod id;
pub mod locale;
pub mod ops;
pub mod otp;
pub mod outbox;
pub mod process;
pub mod ssrf;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod webhook_secrets;

pub use id::ObjectId;
