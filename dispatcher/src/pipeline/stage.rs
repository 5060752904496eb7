//! What the pipeline's stages share, a leaf they import (never the
//! orchestrator, `mod.rs`): the parts of the pipeline a stage borrows for one
//! message ([`Context`]) and the steps every stage takes with them (load,
//! park, fail), the error, the lease margin, the stage timing metric, and
//! how a provider's answer is reported to its breaker.

use super::attempt::Channel;
use crate::hashing::HashingStopped;
use crate::providers::router::Route;
use crate::providers::{AnyProvider, SmsRouter};
use crate::store::{ProviderFailure, Store, StoreError, Target};
use shared::amqp::retry::{self, DelayQueues};
use shared::amqp::{BasicProperties, Broker, PublishError};
use shared::domain::{FailedReason, PhoneValidation};
use shared::events::Event;
use shared::otp::{CodeDeriver, OtpCode};
use shared::outbox::Relay;
use shared::store::fraud::GuardConfig;
use shared::ObjectId;
use std::time::{Duration, Instant};

/// The parts of the pipeline a stage works with, borrowed for one message.
pub(super) struct Context<'a> {
    pub(super) store: &'a Store,
    pub(super) broker: &'a Broker,
    pub(super) relay: &'a Relay,
    pub(super) codes: &'a CodeDeriver,
    pub(super) sms: &'a SmsRouter,
    pub(super) whatsapp: &'a AnyProvider,
    pub(super) voice: &'a AnyProvider,
    /// Provider attempts in process before the message is parked.
    pub(super) inline_attempts: usize,
    pub(super) delays: &'a DelayQueues,
    /// The first scheduled delay: how long a parked message waits at least.
    pub(super) first_delay: Duration,
    /// How the fraud guard judges a workflow's later steps.
    pub(super) guard: &'a GuardConfig,
}

impl Context<'_> {
    /// Load: the validation and what its send needs (`None`: no such validation).
    #[tracing::instrument(skip_all)]
    pub(super) async fn load(&self, id: &ObjectId) -> Result<Option<Target>, PipelineError> {
        let started = Instant::now();
        let target = self.store.load(id).await?;
        stage("load", started);
        Ok(target)
    }

    /// Who sends by `channel`: WhatsApp's and voice's one provider, or the
    /// SMS route for the number (one that did not just fail, when another
    /// is available), with its breaker; `None` when no SMS route is open.
    pub(super) fn provider(
        &self,
        channel: Channel,
        validation: &PhoneValidation,
        failed_last: Option<&str>,
    ) -> Option<(&AnyProvider, Option<&Route>)> {
        Some(match channel {
            Channel::Whatsapp => (self.whatsapp, None),
            Channel::Voice => (self.voice, None),
            Channel::Sms => {
                let route = self.sms.pick(calling_code(&validation.country_code), failed_last)?;
                (&route.provider, Some(route))
            }
        })
    }

    /// The validation's code, the same on every send.
    pub(super) fn code(&self, validation: &PhoneValidation) -> OtpCode {
        let length = u8::try_from(validation.otp_length).unwrap_or(6);
        self.codes.code(validation.id.as_str(), length)
    }

    /// Re-publishes the message to the delay tier for `wait` (with a
    /// confirm); it comes back to the work queue when the wait is over.
    pub(super) async fn park<E: Event>(&self, event: &E, attempts: u32, wait: Duration) -> Result<(), PipelineError> {
        let payload = serde_json::to_vec(event)?;
        let properties = BasicProperties::default()
            .with_message_id(event.event_id().into())
            .with_headers(retry::headers(attempts, 0, 0));
        self.delays.park(self.broker, &payload, properties, wait).await?;
        Ok(())
    }

    /// Fails the validation and publishes its event.
    pub(super) async fn fail(
        &self,
        id: &ObjectId,
        reason: FailedReason,
        failure: Option<ProviderFailure<'_>>,
    ) -> Result<(), PipelineError> {
        if let Some(message) = self.store.fail(id, reason, failure).await? {
            self.relay.publish_soon([message]);
        }
        Ok(())
    }
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
