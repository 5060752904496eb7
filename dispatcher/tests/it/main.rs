//! The crate's integration tests, one binary (each linked binary costs
//! CI a full link of the dependency tree): one module per concern. `logs.rs`
//! stays a binary of its own: it installs the process's global tracing
//! subscriber to read what the dispatcher logs.

mod callback_hardening;
mod callbacks;
mod content;
mod crash;
mod dispatch;
mod expiry;
mod lifecycle_events;
mod node_loss;
mod providers;
mod shutdown;
mod throttling;
mod twilio_contract;
mod voice;
mod workflow;
mod workflow_limits;

/// Not a test: the API and the webhook worker of a `Stack` (`node_loss`) run
/// as this test binary, told by `testkit::process::start_service` to run
/// this test by its exact name, which is why it stands at the binary's root.
#[test]
fn service_process() {
    testkit::process::serve_if_asked();
}
