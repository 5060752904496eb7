//! One `otp.requested` message: decode → load → decide → hash and claim →
//! send (with quick retries) → record → ack. Longer waits go through a delay
//! queue; the message is acked only once its outcome is durable (recorded in
//! PostgreSQL, or re-published to a delay tier with a confirm).
//!
//! This module is the orchestrator, the one place that implements
//! [`Pipeline`]; each stage is a child module of functions over the
//! [`Context`](stage::Context) they borrow from the pipeline for one
//! message, and no stage imports this module.

mod attempt;
mod failover;
mod limits;
mod send;
mod stage;
mod workflow;

pub(crate) use attempt::Channel;
pub use stage::PipelineError;
use stage::{stage, Context, LEASE_MARGIN};

use crate::hashing::Hashing;
use crate::plan::{self, Plan};
use crate::providers::{AnyProvider, SmsRouter};
use crate::store::{Confirmation, Store};
use chrono::Utc;
use shared::amqp::retry::{self, DelayQueues};
use shared::amqp::{Broker, Delivery, Handled};
use shared::domain::{FailedReason, PhoneValidation};
use shared::events::{Event, OtpFailover, OtpRequested};
use shared::otp::{CodeDeriver, OtpCode};
use shared::outbox::Relay;
use shared::process::Handler;
use shared::store::fraud::GuardConfig;
use shared::ObjectId;
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

/// Delay tiers for workflow timers (`channelTimeoutSeconds`, 15..=900): a
/// timer waits in the smallest tier that holds it, so it is late by at most
/// that tier's jitter rather than queued behind a much longer one.
pub const CHANNEL_TIMEOUT_TIERS: &[Duration] = &[
    Duration::from_secs(15),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];

impl Handler for Pipeline {
    /// The consumer's entry point.
    async fn handle(&self, delivery: Delivery) -> Handled {
        let earlier = retry::attempts(&delivery.properties);
        // A failover names its cause; a first send does not.
        if let Ok(failover) = serde_json::from_slice::<OtpFailover>(&delivery.data) {
            let outcome = match shared::domain::workflow::step_of(&failover.cause) {
                Some(index) => workflow::step(&self.context(), &failover, index, earlier).await,
                None => failover::failover(&self.context(), &failover, earlier).await,
            };
            return self.settle(outcome, &failover, earlier).await;
        }
        let Ok(event) = serde_json::from_slice::<OtpRequested>(&delivery.data) else {
            tracing::warn!("undecodable dispatch message; dead-lettering it");
            return Handled::Reject;
        };
        let outcome = self.process(&event, earlier).await;
        self.settle(outcome, &event, earlier).await
    }

    fn delays(&self) -> &DelayQueues {
        &self.delays
    }
}

impl Pipeline {
    /// What the stages borrow for one message.
    fn context(&self) -> Context<'_> {
        Context {
            store: &self.store,
            broker: &self.broker,
            relay: &self.relay,
            codes: &self.codes,
            sms: &self.sms,
            whatsapp: &self.whatsapp,
            voice: &self.voice,
            inline_attempts: self.inline_attempts,
            delays: &self.delays,
            first_delay: self.first_delay,
            guard: &self.guard,
        }
    }

    /// A failure on our side (database, broker) parks the message for the
    /// first delay; if even that fails, it goes back to the queue.
    async fn settle<E: Event>(&self, outcome: Result<Handled, PipelineError>, event: &E, earlier: u32) -> Handled {
        match outcome {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(
                    event_id = event.event_id(),
                    error = format!("{error:#}"),
                    "dispatch failed on our side; parking the message"
                );
                match self.context().park(event, earlier, self.first_delay).await {
                    Ok(()) => Handled::Ack,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Handled::Requeue
                    }
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(validation_id = %event.validation_id))]
    async fn process(&self, event: &OtpRequested, earlier: u32) -> Result<Handled, PipelineError> {
        let cx = self.context();
        let Some(target) = cx.load(&event.validation_id).await? else {
            tracing::warn!("no such validation; dead-lettering the message");
            return Ok(Handled::Reject);
        };
        let validation = &target.validation;
        match plan::plan(validation, Utc::now()) {
            Plan::Skip => {
                tracing::debug!(status = %validation.status, "already handled");
                // A crash may have come between recording the send and
                // parking the workflow's timer: park it again (a duplicate
                // timer sends nothing twice).
                workflow::rearm(&cx, &target).await?;
                return Ok(Handled::Ack);
            }
            Plan::FailExpired => {
                tracing::info!("expired before it could be sent; failing it");
                cx.fail(&validation.id, FailedReason::Expired, None).await?;
                return Ok(Handled::Ack);
            }
            Plan::Send => {}
        }
        let code = match target.test_code().map(OtpCode::parse) {
            Some(Ok(code)) => code,
            _ => cx.code(validation),
        };
        if !self.hash_and_claim(validation, &code).await? {
            return self.claimed_elsewhere(event, earlier).await;
        }
        // A test number, or gateway `none`: nothing leaves the building.
        if target.test_code().is_some() {
            return self.record_unsent(&validation.id, "test").await;
        }
        let Some(channel) = Channel::of(validation.phone_gateway) else {
            return self.record_unsent(&validation.id, "none").await;
        };
        send::deliver(&cx, event, &target, channel, &code, earlier).await
    }

    /// Hashes the code (unless a taken-over send stored its hash already:
    /// the code is the same) and claims the send with the hash stored;
    /// `false` when another instance holds it (or it moved on).
    #[tracing::instrument(skip_all)]
    async fn hash_and_claim(&self, validation: &PhoneValidation, code: &OtpCode) -> Result<bool, PipelineError> {
        let id = &validation.id;
        let hash = match &validation.otp {
            Some(stored) => stored.clone(),
            None => {
                let started = Instant::now();
                let hash = self.hashing.hash(id, code).await?;
                stage("hash", started);
                hash
            }
        };
        let started = Instant::now();
        let claimed = self.store.claim(id, &hash).await?;
        stage("claim", started);
        Ok(claimed)
    }

    async fn record_unsent(&self, id: &ObjectId, provider: &'static str) -> Result<Handled, PipelineError> {
        let sent = Confirmation {
            channel: "none",
            provider,
            message_id: None,
            attempts: 0,
            sent_at: Utc::now(),
            segments: None,
        };
        self.store.mark_sent(id, &sent).await?;
        metrics::counter!("otp_sent_total", "provider" => provider).increment(1);
        tracing::info!(provider, "no message sent (test number or gateway none)");
        Ok(Handled::Ack)
    }

    /// Another instance holds the send (or it moved on meanwhile).
    async fn claimed_elsewhere(&self, event: &OtpRequested, earlier: u32) -> Result<Handled, PipelineError> {
        if let Some(left) = self.store.lease_left(&event.validation_id).await? {
            // The holder may have died: look again just after its lease runs
            // out (then the same code goes out again if it did).
            self.context().park(event, earlier, left + LEASE_MARGIN).await?;
        }
        Ok(Handled::Ack)
    }
}
