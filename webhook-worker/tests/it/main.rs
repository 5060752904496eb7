//! The crate's integration tests, one binary (each linked binary costs
//! CI a full link of the dependency tree): one module per concern.

mod delivery;
mod endpoint_failures;
mod endpoint_fanout;
mod endpoint_rate;
mod endpoint_retention;
mod endpoint_signing;
mod plaintext_secrets;
mod record_plan;
mod retries;
mod shutdown;
