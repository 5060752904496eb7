//! A workflow's later channels (docs/contract.md §14): step `n` sends the
//! validation's *same* code by its `n`th channel (0 is the first send). A
//! step is an `otp.failover` whose cause names it (`channel_<n>`): parked in
//! a delay tier until the channel timeout after the previous send (the
//! timer survives any process: it is a message in RabbitMQ), or published
//! at once through the outbox when the previous channel failed for good or
//! the client asked (`next-channel`). Each step is claimed with a lease on
//! its `send_failovers` row, so a duplicate or redelivered message never
//! sends it twice, and a crash between the send and its record sends it
//! again only as the first send would be (the lease runs out). Before its
//! send a step passes the send limits (`limits.rs`).

use super::attempt::{send_in_flight, Channel};
use super::failover::{admit_claimed, try_again_later};
use super::limits::{self, Day};
use super::stage::{Context, PipelineError, LEASE_MARGIN};
use crate::providers::{Provider, SendError};
use crate::store::{FailoverClaim, Refused, Target};
use chrono::{DateTime, Utc};
use shared::amqp::Handled;
use shared::domain::{workflow, Gateway, ValidationStatus};
use shared::events::OtpFailover;
use std::time::Duration;

/// The validation's channels, in order.
fn channels(target: &Target) -> Vec<Gateway> {
    workflow::channels(target.settings.as_deref(), target.validation.phone_gateway)
}

/// The channel and time of the validation's current message, from its
/// `providerConfirmation` (absent when nothing was sent).
fn current_send(target: &Target) -> Option<(Channel, DateTime<Utc>)> {
    let confirmation = &target.validation.provider_confirmation.as_ref()?.0;
    let channel = confirmation
        .get("channel")?
        .as_str()?
        .parse::<Gateway>()
        .ok()
        .and_then(Channel::of)?;
    let sent_at = DateTime::parse_from_rfc3339(confirmation.get("sentAt")?.as_str()?).ok()?;
    Some((channel, sent_at.with_timezone(&Utc)))
}

/// The step after `channel` in the validation's workflow, if any.
pub(super) fn next_step(target: &Target, channel: Channel) -> Option<(usize, Gateway)> {
    let channels = channels(target);
    let current = channels.iter().position(|c| Channel::of(*c) == Some(channel))?;
    workflow::next(&channels, current)
}

/// Parks the timer of the step after `channel` (sent at `sent_at`): due
/// `channelTimeoutSeconds` later.
pub(super) async fn arm_next(
    cx: &Context<'_>,
    target: &Target,
    channel: Channel,
    sent_at: DateTime<Utc>,
) -> Result<(), PipelineError> {
    let Some((index, _)) = next_step(target, channel) else {
        return Ok(());
    };
    let timeout = target.settings.as_ref().map_or(60, |s| s.channel_timeout_seconds);
    let due = sent_at + chrono::Duration::seconds(i64::from(timeout));
    let timer = OtpFailover::timer(target.validation.id.clone(), &workflow::step_cause(index), due);
    let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    cx.park(&timer, 0, wait).await?;
    tracing::debug!(step = index, wait_ms = wait.as_millis() as u64, "workflow timer parked");
    Ok(())
}

/// Parks again the timer after the current message of an open, sent
/// validation: a message seen twice may be the redelivery of one whose
/// handler died between recording its send and parking the timer.
pub(super) async fn rearm(cx: &Context<'_>, target: &Target) -> Result<(), PipelineError> {
    let validation = &target.validation;
    if validation.status != ValidationStatus::Sent || validation.is_expired(Utc::now()) {
        return Ok(());
    }
    match current_send(target) {
        Some((channel, sent_at)) => arm_next(cx, target, channel, sent_at).await,
        None => Ok(()),
    }
}

/// One workflow step: the same code by the `index`th channel.
#[tracing::instrument(skip_all, fields(validation_id = %event.validation_id, step = index))]
pub(super) async fn step(
    cx: &Context<'_>,
    event: &OtpFailover,
    index: usize,
    earlier: u32,
) -> Result<Handled, PipelineError> {
    let Some(target) = cx.load(&event.validation_id).await? else {
        tracing::warn!("no such validation; dead-lettering the step");
        return Ok(Handled::Reject);
    };
    let validation = &target.validation;
    let (id, cause) = (&validation.id, event.cause.as_str());
    let open = matches!(validation.status, ValidationStatus::New | ValidationStatus::Sent);
    if !open || validation.is_expired(Utc::now()) || target.test_code().is_some() {
        tracing::debug!("the code can no longer be used (or is a test number's); no next channel");
        return Ok(Handled::Ack);
    }
    let channels = channels(&target);
    let Some(channel) = channels.get(index).copied().and_then(Channel::of) else {
        tracing::info!("the workflow has no such channel (its flow changed); nothing to send");
        return Ok(Handled::Ack);
    };
    if let Some(due) = event.not_before {
        if let Ok(wait) = (due - Utc::now()).to_std() {
            // Not yet: a tier cut the wait short. Back to waiting.
            cx.park(event, earlier, wait).await?;
            return Ok(Handled::Ack);
        }
        let current = current_send(&target).map(|(c, _)| c);
        let position = workflow::position(&channels, current.map(Channel::as_str));
        if position >= index {
            tracing::debug!("the workflow moved past this step already");
            return Ok(Handled::Ack);
        }
    }
    cx.store.ensure_step(id, cause).await?;
    match cx.store.claim_failover(id, cause).await? {
        FailoverClaim::Claimed { .. } => {}
        FailoverClaim::Done => {
            // Sent already: re-read what it recorded, and park the timer
            // after it again (its handler may have died before parking it).
            if let Some(now) = cx.load(id).await? {
                rearm(cx, &now).await?;
            }
            return Ok(Handled::Ack);
        }
        FailoverClaim::Held(left) => {
            cx.park(event, earlier, left + LEASE_MARGIN).await?;
            return Ok(Handled::Ack);
        }
    }
    let code = cx.code(validation);
    let Some((provider, route)) = cx.provider(channel, validation, None) else {
        cx.store.end_failover(id, cause, true).await?;
        return Ok(Handled::Ack);
    };
    // The send limits judge every later step (the first send was judged
    // at create): the fraud guard, then the flow's `perDay`.
    let step = (id, cause);
    if let Some(why) = limits::guard_refusal(cx, &target).await? {
        let refusal = ("fraud_guard_blocked", why.as_str());
        limits::refuse_step(cx, step, (channel, provider.name()), refusal).await?;
        return Ok(Handled::Ack);
    }
    // An SMS step takes a place in flight to its provider like any send
    // (or waits in a delay tier while the provider rests).
    let permit = match route {
        Some(route) => match admit_claimed(cx, route, event, earlier, cause).await? {
            Some(permit) => Some(permit),
            None => return Ok(Handled::Ack),
        },
        None => None,
    };
    let day = match limits::take_day(cx, &target).await? {
        Day::Go(unit) => unit,
        Day::Full => {
            drop(permit);
            let refusal = ("too_many_requests", "the flow's perDay sends are used up for today");
            limits::refuse_step(cx, step, (channel, provider.name()), refusal).await?;
            return Ok(Handled::Ack);
        }
    };
    let sent = send_in_flight(permit, (provider, route), &target, channel, &code).await;
    if sent.is_err() {
        // Not sent: the unit goes back (a retry takes one again).
        limits::give_back_day(cx, &validation.project_flow, day).await?;
    }
    match sent {
        Ok(sent) => {
            let message_id = sent.message_id;
            let name = provider.name();
            cx.store
                .record_failover(id, cause, channel.as_str(), name, &message_id)
                .await?;
            metrics::counter!("otp_sent_total", "provider" => name).increment(1);
            metrics::counter!("otp_channel_steps_total", "channel" => channel.as_str()).increment(1);
            tracing::info!(provider = name, channel = channel.as_str(), %message_id, "the same code sent by the next channel");
            arm_next(cx, &target, channel, Utc::now()).await?;
            Ok(Handled::Ack)
        }
        Err(SendError::Transient { .. }) => try_again_later(cx, event, earlier, cause).await,
        Err(error) => {
            let refused = Refused {
                channel: channel.as_str(),
                provider: provider.name(),
                code: error.code(),
                message: error.message(),
            };
            match workflow::next(&channels, index) {
                Some((next, _)) => {
                    tracing::info!("the channel refused the code; moving on to the next");
                    cx.store
                        .move_on(id, Some(cause), &refused, &workflow::step_cause(next))
                        .await?;
                }
                None => {
                    tracing::info!("the last channel refused the code; the earlier sends stand");
                    cx.store.end_failover(id, cause, true).await?;
                }
            }
            Ok(Handled::Ack)
        }
    }
}
