//! One attempt of one claimed delivery: signed with the endpoint's keys,
//! POSTed through the SSRF guard, decided on the retry schedule, and
//! recorded (the attempt's row, the delivery's state, the endpoint's health),
//! disabling the endpoint when it has failed for too long.

use super::tracker::Heard;
use super::EndpointLoop;
use crate::plan::{random_jitter, Attempted, Decision};
use crate::sender::{Call, Signed};
use crate::signing::signature_header;
use crate::ssrf;
use crate::store::{AttemptRecord, ClaimedDelivery};
use chrono::Utc;
use std::time::Duration;

/// How long after disabling an endpoint its pending deliveries are failed
/// once more: longer than a fan-out statement that read it enabled takes.
const STRAGGLERS: Duration = Duration::from_secs(2);

/// What an attempt's decision means for its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    Delivered,
    /// Retried after the delay.
    Retry(Duration),
    Failed,
}

impl Settled {
    /// A decision as a delivery's state; a retry waits at most `longest`.
    pub(crate) fn from_decision(decision: Decision, longest: Duration) -> Self {
        match decision {
            Decision::Delivered => Settled::Delivered,
            Decision::Retry { delay } => Settled::Retry(delay.min(longest)),
            Decision::Gone | Decision::DeadLetter { .. } => Settled::Failed,
        }
    }

    fn status(self) -> &'static str {
        match self {
            Settled::Delivered => "delivered",
            Settled::Retry(_) => "pending",
            Settled::Failed => "failed",
        }
    }
}

impl EndpointLoop {
    /// Makes the attempt and records it; the slot is freed once the
    /// request ends, before the record.
    pub(super) async fn attempt(&self, row: ClaimedDelivery) {
        let attempted_at = Utc::now();
        let call = self.call(&row).await;
        let heard = match (&call.result, call.status) {
            (Attempted::Delivered { .. }, _) => Heard::Success,
            (Attempted::Refused, _) | (_, Some(_)) => Heard::Answer,
            (_, None) => Heard::Nothing,
        };
        let rest = self.tracker.finished(&row.endpoint_id, heard);
        self.slot_freed();
        if let Some(rest) = rest {
            self.pause(&row.endpoint_id, rest).await;
        }
        metrics::histogram!("webhook_endpoint_request_duration_seconds").record(call.latency.as_secs_f64());
        let attempt = u32::try_from(row.attempts).unwrap_or(1).max(1);
        let decision = self.policy.decide(attempt, &call.result, random_jitter());
        let longest = self.policy.schedule().iter().max().copied().unwrap_or_default();
        let settled = Settled::from_decision(decision, longest);
        let outcome = if heard == Heard::Success { "delivered" } else { "failed" };
        metrics::counter!("webhook_endpoint_attempts_total", "endpoint_id" => row.endpoint_id.clone(), "outcome" => outcome)
            .increment(1);
        match settled {
            Settled::Delivered => {
                metrics::counter!("webhook_endpoint_deliveries_total", "status" => "delivered").increment(1)
            }
            Settled::Failed => {
                tracing::info!(
                    endpoint_id = %row.endpoint_id,
                    event_id = %row.event_id,
                    status = call.status,
                    attempt,
                    "endpoint delivery failed for good"
                );
                metrics::counter!("webhook_endpoint_deliveries_total", "status" => "failed").increment(1);
            }
            Settled::Retry(_) => {}
        }
        let next_attempt_at = match settled {
            Settled::Retry(delay) => Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default()),
            _ => None,
        };
        let record = AttemptRecord {
            client_id: row.client_id.clone(),
            attempts: row.attempts,
            status: settled.status(),
            next_attempt_at,
            url: row.url.clone(),
            status_code: call.status,
            latency: call.latency,
            error: call.error,
            response_body: call.response,
            attempted_at,
        };
        if self.record(&row, record).await {
            self.disable(&row.endpoint_id).await;
        }
    }

    /// The signed POST, or why none was made.
    async fn call(&self, row: &ClaimedDelivery) -> Call {
        let url = match url::Url::parse(&row.url) {
            Ok(url) => url,
            Err(_) => return Call::not_made(Attempted::Refused, ssrf::Refused::InvalidUrl.to_string()),
        };
        if let Err(refused) = ssrf::check_url(&url, self.allow_private) {
            return Call::not_made(Attempted::Refused, refused.to_string());
        }
        let keys = match self.keys.keys(row) {
            Ok(keys) => keys,
            Err(error) => {
                tracing::error!(endpoint_id = %row.endpoint_id, %error, "cannot sign for the endpoint");
                let failed = Attempted::Failed {
                    status: None,
                    retry_after: None,
                };
                return Call::not_made(failed, error);
            }
        };
        let body = row.payload.clone().into_bytes();
        let timestamp = Utc::now().timestamp();
        let signed = Signed {
            id: &row.event_id,
            timestamp,
            signature: signature_header(&keys, &row.event_id, timestamp, &body),
        };
        self.sender.post(&url, &signed, body).await
    }

    /// Records the attempt, retrying briefly: the request was made, so the
    /// row must not be claimed again before its lease ends. Whether the
    /// endpoint has been failing for longer than it may.
    async fn record(&self, row: &ClaimedDelivery, record: AttemptRecord) -> bool {
        for attempt in 1..=3 {
            match self.store.record(&row.event_id, &row.endpoint_id, record.clone()).await {
                Ok(expired) => return expired,
                Err(error) if attempt == 3 => {
                    tracing::error!(%error, endpoint_id = %row.endpoint_id, "could not record the endpoint attempt");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        false
    }

    /// Disables an endpoint failing for longer than `WEBHOOK_DISABLE_AFTER_HOURS`
    /// and fails its pending deliveries: at once, and again a moment later
    /// for those a fan-out that read the endpoint still enabled was writing.
    async fn disable(&self, endpoint_id: &str) {
        match self.store.disable(endpoint_id, self.config.disable_after).await {
            Ok(true) => {
                tracing::warn!(endpoint_id, "endpoint disabled: failing for too long");
                metrics::counter!("webhook_endpoints_disabled_total").increment(1);
            }
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, endpoint_id, "could not disable the failing endpoint");
                return;
            }
        }
        for pass in 0..2 {
            if pass > 0 {
                tokio::time::sleep(STRAGGLERS).await;
            }
            if let Err(error) = self.store.fail_pending(endpoint_id).await {
                tracing::warn!(%error, endpoint_id, "could not fail the disabled endpoint's deliveries");
            }
        }
    }

    /// Rests a stalled endpoint: no worker claims its deliveries for `rest`.
    pub(super) async fn pause(&self, endpoint_id: &str, rest: Duration) {
        match self.store.pause(endpoint_id, rest).await {
            Ok(()) => {
                tracing::info!(
                    endpoint_id,
                    rest_ms = rest.as_millis() as u64,
                    "endpoint stalled; resting it"
                );
                metrics::counter!("webhook_endpoints_paused_total").increment(1);
            }
            Err(error) => tracing::warn!(%error, endpoint_id, "could not rest the stalled endpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::DeadLetterReason;

    #[test]
    fn decisions_become_delivery_states() {
        let longest = Duration::from_secs(60);
        assert_eq!(Settled::from_decision(Decision::Delivered, longest), Settled::Delivered);
        assert_eq!(Settled::from_decision(Decision::Gone, longest), Settled::Failed);
        let refused = Decision::DeadLetter {
            reason: DeadLetterReason::Refused,
        };
        assert_eq!(Settled::from_decision(refused, longest), Settled::Failed);
        let exhausted = Decision::DeadLetter {
            reason: DeadLetterReason::AttemptsExhausted,
        };
        assert_eq!(Settled::from_decision(exhausted, longest), Settled::Failed);
        let asked = Decision::Retry {
            delay: Duration::from_secs(3_600),
        };
        assert_eq!(
            Settled::from_decision(asked, longest),
            Settled::Retry(longest),
            "a Retry-After waits at most the longest scheduled delay"
        );
        assert_eq!(
            Settled::from_decision(
                Decision::Retry {
                    delay: Duration::from_secs(5)
                },
                longest
            )
            .status(),
            "pending"
        );
    }
}
