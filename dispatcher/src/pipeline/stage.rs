//! What the pipeline's stages share, a leaf they import (never the
//! orchestrator, `mod.rs`): the `Pipeline` each stage is a method of, its
//! error, the lease margin, the stage timing metric, and how a provider's
//! answer is reported to its breaker.

use crate::hashing::{Hashing, HashingStopped};
use crate::providers::router::Route;
use crate::providers::{AnyProvider, Provider, SendError, SmsRouter};
use crate::store::{Store, StoreError};
use shared::amqp::retry::DelayQueues;
use shared::amqp::{Broker, PublishError};
use shared::otp::CodeDeriver;
use shared::outbox::Relay;
use shared::store::fraud::GuardConfig;
use std::time::{Duration, Instant};

/// Everything a message handler needs.
pub struct Pipeline {
    pub store: Store,
    pub broker: Broker,
    pub relay: Relay,
    pub hashing: Hashing,
    /// Each validation's code, the same on every send.
    pub codes: CodeDeriver,
    /// SMS providers, by route and circuit breaker.
    pub sms: SmsRouter,
    pub whatsapp: AnyProvider,
    /// Who places voice calls.
    pub voice: AnyProvider,
    /// Provider attempts in process before the message is parked.
    pub inline_attempts: usize,
    /// The delay tiers of the dispatch queue.
    pub delays: DelayQueues,
    /// The first scheduled delay: how long a parked message waits at least.
    pub first_delay: Duration,
    /// How the fraud guard judges a workflow's later steps.
    pub guard: GuardConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("broker")]
    Broker(#[from] PublishError),
    #[error(transparent)]
    Hashing(#[from] HashingStopped),
    #[error("encoding")]
    Encoding(#[from] serde_json::Error),
}

/// How long after another holder's lease runs out its send is looked at again.
pub(super) const LEASE_MARGIN: Duration = Duration::from_millis(250);

/// Records how long a stage took.
pub(super) fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("dispatch_stage_seconds", "stage" => name).record(started.elapsed().as_secs_f64());
}

/// `+507` → 507 (0 if malformed: no route matches it).
pub(super) fn calling_code(country_code: &str) -> u16 {
    country_code.trim_start_matches('+').parse().unwrap_or(0)
}

/// Tells a provider's breaker and pacer how its request went (a permanent
/// refusal is still an answer; a throttle is an answer that slows the
/// provider down, not a failure), and shows their state in `/metrics`.
/// Called while the request still holds its place in flight.
pub(super) fn report<T>(route: &Route, sent: &Result<T, SendError>) {
    let (breaker, pacer) = (&route.breaker, &route.pacer);
    match sent {
        Err(error @ SendError::Transient { .. }) => match error.throttled() {
            Some(retry_after) => {
                breaker.succeeded();
                pacer.throttled(retry_after);
            }
            None => breaker.failed(),
        },
        _ => {
            breaker.succeeded();
            pacer.accepted();
        }
    }
    let provider = route.provider.name();
    metrics::gauge!("provider_breaker_state", "provider" => provider).set(f64::from(breaker.state() as u8));
    metrics::gauge!("provider_in_flight_limit", "provider" => provider).set(f64::from(pacer.limit()));
}
