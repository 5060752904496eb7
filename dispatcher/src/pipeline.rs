//! One `otp.requested` message: decode → load → decide → hash and claim →
//! send (with quick retries) → record → ack. Longer waits go through a delay
//! queue; the message is acked only once its outcome is durable (recorded in
//! PostgreSQL, or re-published to a delay tier with a confirm).

use crate::hashing::{Hashing, HashingStopped};
use crate::message::sms_text;
use crate::plan::{self, AfterFailure, Plan};
use crate::providers::router::Breaker;
use crate::providers::{AnyProvider, Outbound, Provider, SendError, SmsRouter};
use crate::store::{Confirmation, ProviderFailure, Store, StoreError, Target};
use backon::BackoffBuilder;
use chrono::Utc;
use shared::amqp::retry::{self, DelayQueues};
use shared::amqp::{BasicProperties, Broker, Delivery, Handled, PublishError};
use shared::domain::{FailedReason, Gateway, PhoneValidation};
use shared::events::OtpRequested;
use shared::otp::{CodeDeriver, OtpCode};
use shared::outbox::Relay;
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
    /// Provider attempts in process before the message is parked.
    pub inline_attempts: usize,
    /// The delay tiers of the dispatch queue.
    pub delays: DelayQueues,
    /// The first scheduled delay: how long a parked message waits at least.
    pub first_delay: Duration,
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

/// What follows a failed attempt.
enum Next {
    /// Try again after this wait (by SMS, another provider if one is available).
    Retry(Duration),
    /// WhatsApp cannot reach the number: SMS now.
    SwitchToSms,
    /// The message is settled.
    Done(Handled),
}

/// How a code goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Sms,
    Whatsapp,
}

/// `+507` → 507 (0 if malformed: no route matches it).
fn calling_code(country_code: &str) -> u16 {
    country_code.trim_start_matches('+').parse().unwrap_or(0)
}

/// Tells a provider's breaker how its request went (a permanent refusal is
/// still an answer), and shows its state in `/metrics`.
fn report(provider: &'static str, breaker: &Breaker, sent: &Result<String, SendError>) {
    match sent {
        Err(SendError::Transient { .. }) => breaker.failed(),
        _ => breaker.succeeded(),
    }
    metrics::gauge!("provider_breaker_state", "provider" => provider).set(f64::from(breaker.state() as u8));
}

/// How long after another holder's lease runs out its send is looked at again.
const LEASE_MARGIN: Duration = Duration::from_millis(250);

/// Records how long a stage took.
fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("dispatch_stage_seconds", "stage" => name).record(started.elapsed().as_secs_f64());
}

impl Pipeline {
    /// The consumer's entry point.
    pub async fn handle(&self, delivery: Delivery) -> Handled {
        let Ok(event) = serde_json::from_slice::<OtpRequested>(&delivery.data) else {
            tracing::warn!("undecodable otp.requested message; dead-lettering it");
            return Handled::Reject;
        };
        let earlier = retry::attempts(&delivery.properties);
        match self.process(&event, earlier).await {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(validation_id = %event.validation_id, error = format!("{error:#}"), "dispatch failed on our side; parking the message");
                match self.park(&event, earlier, self.first_delay).await {
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
        let Some(target) = self.load(&event.validation_id).await? else {
            tracing::warn!("no such validation; dead-lettering the message");
            return Ok(Handled::Reject);
        };
        let validation = &target.validation;
        match plan::plan(validation, Utc::now()) {
            Plan::Skip => {
                tracing::debug!(status = %validation.status, "already handled");
                return Ok(Handled::Ack);
            }
            Plan::FailExpired => {
                tracing::info!("expired before it could be sent; failing it");
                self.fail(&validation.id, FailedReason::Expired, None).await?;
                return Ok(Handled::Ack);
            }
            Plan::Send => {}
        }
        let code = match target.test_code().map(OtpCode::parse) {
            Some(Ok(code)) => code,
            _ => self
                .codes
                .code(validation.id.as_str(), u8::try_from(validation.otp_length).unwrap_or(6)),
        };
        if !self.hash_and_claim(validation, &code).await? {
            return self.claimed_elsewhere(event, earlier).await;
        }
        let channel = match validation.phone_gateway {
            // A test number, or gateway `none`: nothing leaves the building.
            _ if target.test_code().is_some() => return self.record_unsent(&validation.id, "test").await,
            Gateway::None => return self.record_unsent(&validation.id, "none").await,
            Gateway::Sms => Channel::Sms,
            Gateway::Whatsapp => Channel::Whatsapp,
        };
        self.deliver(event, &target, channel, &code, earlier).await
    }

    #[tracing::instrument(skip_all)]
    async fn load(&self, id: &ObjectId) -> Result<Option<Target>, PipelineError> {
        let started = Instant::now();
        let target = self.store.load(id).await?;
        stage("load", started);
        Ok(target)
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
            provider,
            message_id: None,
            attempts: 0,
            sent_at: Utc::now(),
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
            self.park(event, earlier, left + LEASE_MARGIN).await?;
        }
        Ok(Handled::Ack)
    }

    /// Sends by `channel`, retrying in process while waits are short (an SMS
    /// retry goes to another provider when one is available); ends with the
    /// send recorded, the message parked, or the validation failed.
    #[tracing::instrument(skip_all, fields(channel = ?channel))]
    async fn deliver(
        &self,
        event: &OtpRequested,
        target: &Target,
        mut channel: Channel,
        code: &OtpCode,
        earlier: u32,
    ) -> Result<Handled, PipelineError> {
        let validation = &target.validation;
        let calling_code = calling_code(&validation.country_code);
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .with_max_times(self.inline_attempts.saturating_sub(1))
            .build();
        let mut attempts = earlier;
        let mut failed_last: Option<&'static str> = None;
        loop {
            let (provider, breaker) = match channel {
                Channel::Whatsapp => (&self.whatsapp, None),
                Channel::Sms => match self.sms.pick(calling_code, failed_last) {
                    Some(route) => (&route.provider, Some(&route.breaker)),
                    None => {
                        return self
                            .give_up(
                                &validation.id,
                                FailedReason::ProviderUnavailable,
                                "none",
                                None,
                                attempts,
                            )
                            .await
                    }
                },
            };
            if validation.is_expired(Utc::now()) {
                let reason = FailedReason::ProviderUnavailable;
                return self
                    .give_up(&validation.id, reason, provider.name(), None, attempts)
                    .await;
            }
            attempts += 1;
            let sent = self.send_once(provider, target, code).await;
            if let Some(breaker) = breaker {
                report(provider.name(), breaker, &sent);
            }
            let error = match sent {
                Ok(message_id) => return self.record_sent(target, provider.name(), &message_id, attempts).await,
                Err(error) => error,
            };
            failed_last = Some(provider.name());
            match self
                .after_failure(event, target, provider, &error, backoff.next(), attempts)
                .await?
            {
                Next::Retry(wait) => tokio::time::sleep(wait).await,
                Next::SwitchToSms => channel = Channel::Sms,
                Next::Done(handled) => return Ok(handled),
            }
        }
    }

    /// Decides and does what follows a failed attempt.
    async fn after_failure(
        &self,
        event: &OtpRequested,
        target: &Target,
        provider: &AnyProvider,
        error: &SendError,
        backoff: Option<Duration>,
        attempts: u32,
    ) -> Result<Next, PipelineError> {
        let validation = &target.validation;
        let can_fall_back = validation.phone_gateway == Gateway::Whatsapp && target.sms_fallback();
        let next = plan::after_failure(
            error,
            backoff,
            self.first_delay,
            can_fall_back,
            Utc::now(),
            validation.expires_at,
        );
        let name = provider.name();
        Ok(match next {
            AfterFailure::RetryInline(wait) => {
                metrics::counter!("otp_retried_total", "provider" => name).increment(1);
                tracing::info!(attempts, wait_ms = wait.as_millis() as u64, %error, "provider failed; retrying");
                if !self.store.renew(&validation.id).await? {
                    tracing::info!("the send was taken over meanwhile; leaving it to its new holder");
                    return Ok(Next::Done(Handled::Ack));
                }
                Next::Retry(wait)
            }
            AfterFailure::FallBackToSms => {
                tracing::info!("not a WhatsApp user; falling back to SMS");
                Next::SwitchToSms
            }
            AfterFailure::Park(wait) => {
                metrics::counter!("otp_retried_total", "provider" => name).increment(1);
                tracing::info!(attempts, wait_ms = wait.as_millis() as u64, %error, "provider failing; parking the message");
                self.store.release(&validation.id).await?;
                self.park(event, attempts, wait).await?;
                Next::Done(Handled::Ack)
            }
            AfterFailure::GiveUpUnavailable => {
                let reason = FailedReason::ProviderUnavailable;
                Next::Done(
                    self.give_up(&validation.id, reason, name, Some(error), attempts)
                        .await?,
                )
            }
            AfterFailure::GiveUpRejected => {
                let reason = FailedReason::ProviderRejected;
                Next::Done(
                    self.give_up(&validation.id, reason, name, Some(error), attempts)
                        .await?,
                )
            }
        })
    }

    /// One provider request; the provider's message id on success.
    async fn send_once(&self, provider: &AnyProvider, target: &Target, code: &OtpCode) -> Result<String, SendError> {
        let validation = &target.validation;
        let minutes = ((validation.expires_at - Utc::now()).num_seconds() + 59) / 60;
        let outbound = Outbound {
            to: validation.e164(),
            text: sms_text(validation.language, validation.title(), code.expose(), minutes),
            code: code.expose().to_owned(),
            language: validation.language,
        };
        let started = Instant::now();
        let result = provider.send(&outbound).await;
        let name = provider.name();
        metrics::histogram!("provider_latency_seconds", "provider" => name).record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(SendError::Transient { .. }) => "transient",
            Err(SendError::Permanent { .. }) => "permanent",
        };
        metrics::counter!("provider_requests_total", "provider" => name, "outcome" => outcome).increment(1);
        result.map(|receipt| receipt.message_id)
    }

    #[tracing::instrument(skip_all)]
    async fn record_sent(
        &self,
        target: &Target,
        provider: &'static str,
        message_id: &str,
        attempts: u32,
    ) -> Result<Handled, PipelineError> {
        let sent = Confirmation {
            provider,
            message_id: Some(message_id),
            attempts,
            sent_at: Utc::now(),
        };
        let started = Instant::now();
        self.store.mark_sent(&target.validation.id, &sent).await?;
        stage("record", started);
        metrics::counter!("otp_sent_total", "provider" => provider).increment(1);
        metrics::histogram!("otp_queue_lag_seconds")
            .record((sent.sent_at - target.validation.created_at).num_milliseconds() as f64 / 1000.0);
        tracing::info!(attempts, %message_id, "code sent");
        Ok(Handled::Ack)
    }

    async fn give_up(
        &self,
        id: &ObjectId,
        reason: FailedReason,
        provider: &str,
        error: Option<&SendError>,
        attempts: u32,
    ) -> Result<Handled, PipelineError> {
        tracing::warn!(provider, attempts, reason = %reason, error = error.map(|e| e.to_string()), "giving up on this code");
        let failure = ProviderFailure {
            provider,
            code: error.and_then(SendError::code),
            message: error
                .map(SendError::message)
                .unwrap_or("the code expired before the provider accepted it"),
            attempts,
        };
        self.fail(id, reason, Some(failure)).await?;
        metrics::counter!("otp_failed_total", "provider" => provider.to_owned(), "reason" => reason.as_str())
            .increment(1);
        Ok(Handled::Ack)
    }

    async fn fail(
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

    /// Re-publishes the message to the delay tier for `wait` (with a
    /// confirm); it comes back to the work queue when the wait is over.
    async fn park(&self, event: &OtpRequested, attempts: u32, wait: Duration) -> Result<(), PipelineError> {
        let payload = serde_json::to_vec(event)?;
        let properties = BasicProperties::default()
            .with_message_id(event.event_id.as_str().into())
            .with_headers(retry::headers(attempts, 0, 0));
        self.delays.park(&self.broker, &payload, properties, wait).await?;
        Ok(())
    }
}
