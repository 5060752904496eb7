//! The crate's integration tests, one binary (each linked binary costs
//! CI a full link of the dependency tree): one module per concern.

mod delivery;
mod endpoint_fanout;
mod plaintext_secrets;
mod retries;
mod shutdown;
