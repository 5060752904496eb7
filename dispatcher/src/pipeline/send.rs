//! Sending a claimed code: by SMS (through the router and its breakers) or
//! WhatsApp, quick retries in process, longer waits parked in a delay queue,
//! and what is recorded when it went out or when it is given up.

use super::attempt::{send_in_flight, Channel, Sent};
use super::stage::{stage, Context, PipelineError};
use super::workflow::{arm_next, next_step};
use crate::plan::{self, AfterFailure};
use crate::providers::pacing::{Admission, Permit};
use crate::providers::redact::Redacted;
use crate::providers::router::Route;
use crate::providers::{AnyProvider, Provider, SendError};
use crate::store::{Confirmation, ProviderFailure, Refused, Target};
use backon::BackoffBuilder;
use chrono::Utc;
use shared::amqp::Handled;
use shared::domain::{workflow, FailedReason, Gateway};
use shared::events::OtpRequested;
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

/// What waiting for a place in flight to a provider came to.
enum Admitted<'a> {
    Go(Permit<'a>),
    /// The message is settled (parked for the provider's rest, taken over,
    /// or given up).
    Settled(Handled),
}

/// Sends by `channel`, retrying in process while waits are short (an SMS
/// retry goes to another provider when one is available); ends with the
/// send recorded, the message parked, or the validation failed.
#[tracing::instrument(skip_all, fields(channel = ?channel))]
pub(super) async fn deliver(
    cx: &Context<'_>,
    event: &OtpRequested,
    target: &Target,
    mut channel: Channel,
    code: &OtpCode,
    earlier: u32,
) -> Result<Handled, PipelineError> {
    let validation = &target.validation;
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .with_max_times(cx.inline_attempts.saturating_sub(1))
        .build();
    let mut attempts = earlier;
    let mut failed_last: Option<&'static str> = None;
    loop {
        let Some((provider, route)) = cx.provider(channel, validation, failed_last) else {
            let reason = FailedReason::ProviderUnavailable;
            return give_up(cx, &validation.id, reason, "none", None, attempts).await;
        };
        if validation.is_expired(Utc::now()) {
            let reason = FailedReason::ProviderUnavailable;
            return give_up(cx, &validation.id, reason, provider.name(), None, attempts).await;
        }
        let permit = match route {
            Some(route) => match admit(cx, event, target, route, attempts).await? {
                Admitted::Go(permit) => Some(permit),
                Admitted::Settled(handled) => return Ok(handled),
            },
            None => None,
        };
        attempts += 1;
        let error = match send_in_flight(permit, (provider, route), target, channel, code).await {
            Ok(sent) => return record_sent(cx, target, channel, provider.name(), &sent, attempts).await,
            Err(error) => error,
        };
        failed_last = Some(provider.name());
        let quick_retry = backoff.next();
        match after_failure(cx, event, target, channel, provider, &error, quick_retry, attempts).await? {
            Next::Retry(wait) => tokio::time::sleep(wait).await,
            Next::SwitchToSms => channel = Channel::Sms,
            Next::Done(handled) => return Ok(handled),
        }
    }
}

/// Waits for a place in flight to the route's provider (`pacing`),
/// keeping the send's lease while it waits; parks the message when the
/// provider rests (its `Retry-After` was long), or gives up when the
/// code would expire first.
async fn admit<'a>(
    cx: &Context<'_>,
    event: &OtpRequested,
    target: &Target,
    route: &'a Route,
    attempts: u32,
) -> Result<Admitted<'a>, PipelineError> {
    let validation = &target.validation;
    let patience = cx.store.lease() / 2;
    loop {
        let started = Instant::now();
        let admission = route.pacer.admit(patience).await;
        stage("pace", started);
        let left = (validation.expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        match admission {
            Admission::Go(permit) => return Ok(Admitted::Go(permit)),
            Admission::Busy if left.is_zero() => {}
            Admission::Busy => {
                if !cx.store.renew(&validation.id).await? {
                    tracing::info!("the send was taken over while it waited for the provider");
                    return Ok(Admitted::Settled(Handled::Ack));
                }
                continue;
            }
            Admission::Resting(wait) if wait < left => {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "the provider asked for a rest; parking the message"
                );
                cx.store.release(&validation.id).await?;
                cx.park(event, attempts, wait).await?;
                return Ok(Admitted::Settled(Handled::Ack));
            }
            Admission::Resting(_) => {}
        }
        let reason = FailedReason::ProviderUnavailable;
        let name = route.provider.name();
        return Ok(Admitted::Settled(
            give_up(cx, &validation.id, reason, name, None, attempts).await?,
        ));
    }
}

/// Decides and does what follows a failed attempt.
#[allow(clippy::too_many_arguments)]
async fn after_failure(
    cx: &Context<'_>,
    event: &OtpRequested,
    target: &Target,
    channel: Channel,
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
        cx.first_delay,
        can_fall_back,
        Utc::now(),
        validation.expires_at,
    );
    let name = provider.name();
    Ok(match next {
        AfterFailure::RetryInline(wait) => {
            metrics::counter!("otp_retried_total", "provider" => name).increment(1);
            tracing::info!(attempts, wait_ms = wait.as_millis() as u64, error = %Redacted(error), "provider failed; retrying");
            if !cx.store.renew(&validation.id).await? {
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
            cx.store.release(&validation.id).await?;
            cx.park(event, attempts, wait).await?;
            Next::Done(Handled::Ack)
        }
        AfterFailure::GiveUpUnavailable => {
            let reason = FailedReason::ProviderUnavailable;
            Next::Done(give_up(cx, &validation.id, reason, name, Some(error), attempts).await?)
        }
        AfterFailure::GiveUpRejected if next_step(target, channel).is_some() => {
            let Some((index, _)) = next_step(target, channel) else {
                unreachable!("checked by the guard");
            };
            tracing::info!(error = %Redacted(error), "the channel refused the code; moving on to the next");
            let refused = Refused {
                channel: channel.as_str(),
                provider: name,
                code: error.code(),
                message: error.message(),
            };
            cx.store
                .move_on(&validation.id, None, &refused, &workflow::step_cause(index))
                .await?;
            Next::Done(Handled::Ack)
        }
        AfterFailure::GiveUpRejected => {
            let reason = FailedReason::ProviderRejected;
            Next::Done(give_up(cx, &validation.id, reason, name, Some(error), attempts).await?)
        }
    })
}

#[tracing::instrument(skip_all)]
async fn record_sent(
    cx: &Context<'_>,
    target: &Target,
    channel: Channel,
    provider: &'static str,
    sent: &Sent,
    attempts: u32,
) -> Result<Handled, PipelineError> {
    let message_id = &sent.message_id;
    let sent = Confirmation {
        channel: channel.as_str(),
        provider,
        message_id: Some(message_id),
        attempts,
        sent_at: Utc::now(),
        segments: sent.segments,
    };
    let started = Instant::now();
    let recorded = cx.store.mark_sent(&target.validation.id, &sent).await?;
    stage("record", started);
    if recorded {
        // The workflow's timer, parked before the message is acked (a
        // crash in between: the redelivered message arms it again).
        arm_next(cx, target, channel, sent.sent_at).await?;
    }
    metrics::counter!("otp_sent_total", "provider" => provider).increment(1);
    metrics::histogram!("otp_queue_lag_seconds")
        .record((sent.sent_at - target.validation.created_at).num_milliseconds() as f64 / 1000.0);
    tracing::info!(attempts, %message_id, "code sent");
    Ok(Handled::Ack)
}

async fn give_up(
    cx: &Context<'_>,
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
    cx.fail(id, reason, Some(failure)).await?;
    metrics::counter!("otp_failed_total", "provider" => provider.to_owned(), "reason" => reason.as_str()).increment(1);
    Ok(Handled::Ack)
}
