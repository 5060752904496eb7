//! The send limits on a workflow's later step (docs/contract.md §9, §14):
//! the fraud guard judges the number as it would a create (voice calls are
//! the dearest route to pump) and the step takes a unit of the flow's
//! `perDay`. A refused step is not sent: it joins
//! `providerConfirmation.history` as a failed send saying why, no later
//! step follows (the limit would refuse it too), and the validation stays
//! open for the code already sent.

use super::attempt::Channel;
use super::stage::{Context, PipelineError};
use crate::store::{DayUnit, Refused, Target};
use chrono::Utc;
use shared::domain::fraud::GuardMode;
use shared::ObjectId;

/// What the `perDay` budget says of a step.
pub(super) enum Day {
    /// Go: the flow has no `perDay`, or the step took a unit of it.
    Go(Option<DayUnit>),
    /// Today's units are used up.
    Full,
}

/// The fraud guard's word on a later step: why it refuses it, if it does.
pub(super) async fn guard_refusal(cx: &Context<'_>, target: &Target) -> Result<Option<String>, PipelineError> {
    let mode = target.settings.as_ref().map_or(GuardMode::default(), |s| s.fraud_guard);
    if mode == GuardMode::Off {
        return Ok(None);
    }
    let Some(until) = cx.store.guard_step(&target.validation, cx.guard).await? else {
        return Ok(None);
    };
    metrics::counter!("fraud_guard_refused_total").increment(1);
    let minutes = (until - Utc::now()).num_minutes().max(1);
    Ok(Some(format!(
        "the fraud guard blocks the number's prefix for {minutes} more minute(s)"
    )))
}

/// Takes a unit of the flow's `perDay` for a step about to be sent.
pub(super) async fn take_day(cx: &Context<'_>, target: &Target) -> Result<Day, PipelineError> {
    let Some(per_day) = target.settings.as_ref().and_then(|s| s.rate_limits.per_day) else {
        return Ok(Day::Go(None));
    };
    match cx.store.take_day(&target.validation.project_flow, per_day).await? {
        Some(unit) => Ok(Day::Go(Some(unit))),
        None => {
            metrics::counter!("rate_limited_total", "limit" => "per_day").increment(1);
            Ok(Day::Full)
        }
    }
}

/// Gives back the `perDay` unit of a step that was not sent.
pub(super) async fn give_back_day(
    cx: &Context<'_>,
    flow: &ObjectId,
    unit: Option<DayUnit>,
) -> Result<(), PipelineError> {
    if let Some(unit) = unit {
        cx.store.give_back_day(flow, unit).await?;
    }
    Ok(())
}

/// Closes a step the limits refused (`code`, `message`), unsent.
pub(super) async fn refuse_step(
    cx: &Context<'_>,
    (id, cause): (&ObjectId, &str),
    (channel, provider): (Channel, &str),
    (code, message): (&str, &str),
) -> Result<(), PipelineError> {
    let refused = Refused {
        channel: channel.as_str(),
        provider,
        code: Some(code),
        message,
    };
    cx.store.refuse_step(id, cause, &refused).await?;
    tracing::info!(
        channel = channel.as_str(),
        code,
        "the send limits refused the step; no later step"
    );
    Ok(())
}
