//! The one test harness of the workspace. Integration tests talk to the
//! machine's real PostgreSQL and RabbitMQ (each test in its own database and
//! queue namespace, so they run in parallel) and to real HTTP servers on
//! loopback standing in for providers and webhook receivers:
//!
//! - [`infra`]: throwaway databases and queue namespaces, polling with a
//!   deadline, a TCP proxy that plays a dead broker;
//! - [`api`]: the API in-process, with a client, a token and arrange helpers
//!   (or as a child process configured by its environment: `api_process::ApiProcess`);
//! - [`dispatch`]: the API plus dispatchers and provider stand-ins;
//! - [`callbacks`]: providers' signed status callbacks, and a Twilio stand-in
//!   that reports before it answers;
//! - [`webhooks`]: the API plus the webhook worker and scripted receivers;
//! - [`webhook_endpoints`]: webhook endpoints arranged as rows, and what
//!   their deliveries and attempts came to;
//! - [`stack`]: all three services as child processes, for failover tests;
//! - [`cluster`]: a throwaway three-node RabbitMQ cluster;
//! - [`lifecycle`]: webhook endpoints, validations expired in bulk, and the
//!   lifecycle events published;
//! - [`logs`]: log lines captured, for tests of what must not be logged.

#![allow(clippy::expect_used)] // test support: a failed setup step should stop the test loudly

pub mod api;
pub mod api_process;
pub mod callbacks;
pub mod cluster;
pub mod dispatch;
pub mod infra;
pub mod lifecycle;
pub mod logs;
pub mod process;
pub mod schema;
pub mod stack;
pub mod webdriver;
pub mod webhook_endpoints;
pub mod webhooks;

pub use api::{create_client, Response, TestApp};
pub use infra::{amqp, amqp_url, database, delete_namespace, drain, eventually, server_url, topology, Proxy};
