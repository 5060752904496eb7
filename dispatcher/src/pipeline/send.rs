//! Sending a claimed code: by SMS (through the router and its breakers) or
//! WhatsApp, quick retries in process, longer waits parked in a delay queue,
//! and what is recorded when it went out or when it is given up.

use super::{stage, Pipeline, PipelineError};
use crate::plan::{self, AfterFailure};
use crate::providers::redact::Redacted;
use crate::providers::router::Breaker;
use crate::providers::{AnyProvider, Outbound, Provider, SendError};
use crate::store::{Confirmation, ProviderFailure, Target};
use crate::text::sms_text;
use backon::BackoffBuilder;
use chrono::Utc;
use shared::amqp::Handled;
use shared::domain::{FailedReason, Gateway};
use shared::events::OtpRequested;
use shared::locale::Segments;
use shared::otp::OtpCode;
use shared::ObjectId;
use std::time::{Duration, Instant};

/// What follows a failed attempt.
enum Next {
    /// Try again after this wait (by SMS, another provider if one is available).
    Retry(Duration),
    /// WhatsApp cannot reach the number: SMS now.
    SwitchToSms,
    /// The message is settled.
    Done(Handled),
}

/// A message the provider accepted.
pub(super) struct Sent {
    pub message_id: String,
    /// An SMS's segments and alphabet (none for WhatsApp).
    pub segments: Option<Segments>,
}

/// How a code goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    Sms,
    Whatsapp,
}

/// `+507` → 507 (0 if malformed: no route matches it).
pub(super) fn calling_code(country_code: &str) -> u16 {
    country_code.trim_start_matches('+').parse().unwrap_or(0)
}

/// Tells a provider's breaker how its request went (a permanent refusal is
/// still an answer), and shows its state in `/metrics`.
pub(super) fn report<T>(provider: &'static str, breaker: &Breaker, sent: &Result<T, SendError>) {
    match sent {
        Err(SendError::Transient { .. }) => breaker.failed(),
        _ => breaker.succeeded(),
    }
    metrics::gauge!("provider_breaker_state", "provider" => provider).set(f64::from(breaker.state() as u8));
}

impl Pipeline {
    /// Sends by `channel`, retrying in process while waits are short (an SMS
    /// retry goes to another provider when one is available); ends with the
    /// send recorded, the message parked, or the validation failed.
    #[tracing::instrument(skip_all, fields(channel = ?channel))]
    pub(super) async fn deliver(
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
                Ok(sent) => return self.record_sent(target, provider.name(), &sent, attempts).await,
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
                tracing::info!(attempts, wait_ms = wait.as_millis() as u64, error = %Redacted(error), "provider failed; retrying");
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
                tracing::info!(attempts, wait_ms = wait.as_millis() as u64, error = %Redacted(error), "provider failing; parking the message");
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

    /// One provider request; the provider's message id on success, and
    /// the segments of an SMS (counted in `sms_segments_total`).
    pub(super) async fn send_once(
        &self,
        provider: &AnyProvider,
        target: &Target,
        code: &OtpCode,
    ) -> Result<Sent, SendError> {
        let validation = &target.validation;
        let minutes = ((validation.expires_at - Utc::now()).num_seconds() + 59) / 60;
        let settings = target.settings.as_deref();
        let outbound = Outbound {
            to: validation.e164(),
            text: sms_text(
                validation.language,
                validation.title(),
                code.expose(),
                minutes,
                settings,
            ),
            code: code.expose().to_owned(),
            language: validation.language,
        };
        let segments = (!matches!(provider, AnyProvider::Meta(_))).then(|| shared::locale::segments(&outbound.text));
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
        if let (Ok(_), Some(segments)) = (&result, segments) {
            metrics::counter!("sms_segments_total", "provider" => name).increment(segments.count as u64);
        }
        result.map(|receipt| Sent {
            message_id: receipt.message_id,
            segments,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn record_sent(
        &self,
        target: &Target,
        provider: &'static str,
        sent: &Sent,
        attempts: u32,
    ) -> Result<Handled, PipelineError> {
        let message_id = &sent.message_id;
        let sent = Confirmation {
            provider,
            message_id: Some(message_id),
            attempts,
            sent_at: Utc::now(),
            segments: sent.segments,
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
        tracing::warn!(provider, attempts, reason = %reason, error = error.map(|e| Redacted(e).to_string()), "giving up on this code");
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
