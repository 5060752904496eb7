//! One provider request, the act every stage ends in: the channel a code
//! goes out by, the text composed for it, the request measured, and its
//! answer reported to the route's breaker while it still holds its place in
//! flight.

use crate::providers::pacing::Permit;
use crate::providers::router::Route;
use crate::providers::{AnyProvider, Outbound, Provider, SendError};
use crate::store::Target;
use crate::text::{sms_text, voice_twiml};
use chrono::Utc;
use shared::domain::Gateway;
use shared::locale::Segments;
use shared::otp::OtpCode;
use std::time::Instant;

/// How a code goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    Sms,
    Whatsapp,
    Voice,
}

impl Channel {
    /// The channel a gateway sends by (`None` for gateway `none`).
    pub(crate) fn of(gateway: Gateway) -> Option<Channel> {
        match gateway {
            Gateway::Sms => Some(Channel::Sms),
            Gateway::Whatsapp => Some(Channel::Whatsapp),
            Gateway::Voice => Some(Channel::Voice),
            Gateway::None => None,
        }
    }

    /// As in `providerConfirmation.channel`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Voice => "voice",
        }
    }
}

/// A message the provider accepted.
pub(super) struct Sent {
    pub message_id: String,
    /// An SMS's segments and alphabet (none for WhatsApp).
    pub segments: Option<Segments>,
}

/// One request to `provider` holding `permit` (its place in flight to
/// `route`, for an SMS): the answer is reported to the route's breaker
/// before the place is given back.
pub(super) async fn send_in_flight(
    permit: Option<Permit<'_>>,
    (provider, route): (&AnyProvider, Option<&Route>),
    target: &Target,
    channel: Channel,
    code: &OtpCode,
) -> Result<Sent, SendError> {
    let sent = send_once(provider, target, channel, code).await;
    if let Some(route) = route {
        report(route, &sent);
    }
    drop(permit);
    sent
}

/// One provider request; the provider's message id on success, and
/// the segments of an SMS (counted in `sms_segments_total`).
async fn send_once(
    provider: &AnyProvider,
    target: &Target,
    channel: Channel,
    code: &OtpCode,
) -> Result<Sent, SendError> {
    let validation = &target.validation;
    let minutes = ((validation.expires_at - Utc::now()).num_seconds() + 59) / 60;
    let settings = target.settings.as_deref();
    let (language, app, code_text) = (validation.language, validation.title(), code.expose());
    let text = match channel {
        Channel::Voice => voice_twiml(language, app, code_text, minutes, settings),
        Channel::Sms | Channel::Whatsapp => sms_text(language, app, code_text, minutes, settings),
    };
    let outbound = Outbound {
        to: validation.e164(),
        text,
        code: code.expose().to_owned(),
        language: validation.language,
    };
    // Segments are an SMS's (a call and a WhatsApp message have none).
    let is_sms = matches!(channel, Channel::Sms) && !matches!(provider, AnyProvider::Meta(_));
    let segments = is_sms.then(|| shared::locale::segments(&outbound.text));
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

/// Tells a provider's breaker and pacer how its request went (a permanent
/// refusal is still an answer; a throttle is an answer that slows the
/// provider down, not a failure), and shows their state in `/metrics`.
/// Called while the request still holds its place in flight.
fn report<T>(route: &Route, sent: &Result<T, SendError>) {
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
