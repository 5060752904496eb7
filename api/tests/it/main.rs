//! The crate's integration tests, one binary (each linked binary costs
//! CI a full link of the dependency tree): one module per concern.

mod bad_input;
mod broker_outage;
mod console;
mod content;
mod fraud_guard;
mod fraud_guard_upkeep;
mod http_server;
mod login_keys;
mod numbers_and_codes;
mod openapi_conformance;
mod operations;
mod phone_validations;
mod rate_limits;
mod schema;
mod security;
mod shutdown;
mod slow_clients;
mod webhook_endpoints;
mod webhook_fixtures;
mod webhook_messages;
