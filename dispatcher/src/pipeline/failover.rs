//! A failover: a provider reported a sent code undelivered (docs/contract.md §11),
//! and the API queued one more send of the *same* code, by the next SMS
//! provider (`sms_undelivered`) or by SMS instead of WhatsApp
//! (`whatsapp_failed`), while the code is valid. Claimed with a lease like a
//! first send, so a duplicate message sends nothing twice.

use super::attempt::{send_in_flight, Channel};
use super::stage::{calling_code, Context, PipelineError, LEASE_MARGIN};
use crate::providers::pacing::{Admission, Permit};
use crate::providers::router::Route;
use crate::providers::{Provider, SendError};
use crate::store::FailoverClaim;
use chrono::Utc;
use shared::amqp::Handled;
use shared::domain::ValidationStatus;
use shared::events::OtpFailover;

/// One failover: the same code by the next SMS provider.
#[tracing::instrument(skip_all, fields(validation_id = %event.validation_id, cause = %event.cause))]
pub(super) async fn failover(cx: &Context<'_>, event: &OtpFailover, earlier: u32) -> Result<Handled, PipelineError> {
    let Some(target) = cx.load(&event.validation_id).await? else {
        tracing::warn!("no such validation; dead-lettering the failover");
        return Ok(Handled::Reject);
    };
    let validation = &target.validation;
    let (id, cause) = (&validation.id, event.cause.as_str());
    let failed_provider = match cx.store.claim_failover(id, cause).await? {
        FailoverClaim::Claimed { failed_provider } => failed_provider,
        FailoverClaim::Done => return Ok(Handled::Ack),
        FailoverClaim::Held(left) => {
            cx.park(event, earlier, left + LEASE_MARGIN).await?;
            return Ok(Handled::Ack);
        }
    };
    let open = matches!(validation.status, ValidationStatus::New | ValidationStatus::Sent);
    if !open || validation.is_expired(Utc::now()) {
        tracing::info!("the code can no longer be used; no failover");
        cx.store.end_failover(id, cause, true).await?;
        return Ok(Handled::Ack);
    }
    let route = cx
        .sms
        .pick(calling_code(&validation.country_code), Some(&failed_provider))
        .filter(|route| route.provider.name() != failed_provider);
    let Some(route) = route else {
        tracing::info!(failed_provider, "no other SMS provider to fail over to");
        cx.store.end_failover(id, cause, true).await?;
        return Ok(Handled::Ack);
    };
    let code = cx.code(validation);
    let Some(permit) = admit_claimed(cx, route, event, earlier, cause).await? else {
        return Ok(Handled::Ack);
    };
    let provider = (&route.provider, Some(route));
    let sent = send_in_flight(Some(permit), provider, &target, Channel::Sms, &code).await;
    match sent {
        Ok(sent) => {
            let provider = route.provider.name();
            let message_id = sent.message_id;
            cx.store
                .record_failover(id, cause, Channel::Sms.as_str(), provider, &message_id)
                .await?;
            metrics::counter!("otp_failovers_total", "cause" => cause.to_owned(), "provider" => provider).increment(1);
            tracing::info!(provider, %message_id, "the same code sent again by failover");
            Ok(Handled::Ack)
        }
        Err(SendError::Transient { .. }) => try_again_later(cx, event, earlier, cause).await,
        Err(error) => {
            tracing::warn!(%error, "the failover was refused; the first send stands");
            cx.store.end_failover(id, cause, true).await?;
            Ok(Handled::Ack)
        }
    }
}

/// A place in flight to `route` for the claimed `send_failovers` row
/// `cause` (a failover or a workflow step), within the claim's lease; or,
/// when the provider is busy or resting, the claim is given back and the
/// message waits in a delay tier (as long as the provider's rest, if it
/// asked one): `None`, and the message is settled.
pub(super) async fn admit_claimed<'r>(
    cx: &Context<'_>,
    route: &'r Route,
    event: &OtpFailover,
    earlier: u32,
    cause: &str,
) -> Result<Option<Permit<'r>>, PipelineError> {
    let wait = match route.pacer.admit(cx.store.lease() / 2).await {
        Admission::Go(permit) => return Ok(Some(permit)),
        Admission::Resting(wait) => wait.max(cx.first_delay),
        Admission::Busy => cx.first_delay,
    };
    cx.store.end_failover(&event.validation_id, cause, false).await?;
    cx.park(event, earlier, wait).await?;
    Ok(None)
}

/// A claimed send (a failover or a workflow step) that failed for now: the
/// claim is given back and the message waits for the first delay.
pub(super) async fn try_again_later(
    cx: &Context<'_>,
    event: &OtpFailover,
    earlier: u32,
    cause: &str,
) -> Result<Handled, PipelineError> {
    cx.store.end_failover(&event.validation_id, cause, false).await?;
    cx.park(event, earlier.saturating_add(1), cx.first_delay).await?;
    Ok(Handled::Ack)
}
