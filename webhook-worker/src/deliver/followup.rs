//! What follows an attempt: the decision acted on (a retry queued, a dead
//! letter parked), the attempt's row completed, the message settled; and
//! deferrals, which put a message off without an attempt.

use super::stage::{back_off, millis, stage};
use crate::event::Message;
use crate::hosts::Busy;
use crate::plan::{random_jitter, DeadLetterReason, Decision, RetryPolicy};
use crate::sender::Call;
use crate::store::{Finished, Outcome, Store};
use chrono::{DateTime, Utc};
use shared::amqp::retry::DelayQueues;
use shared::amqp::{Broker, Handled, PublishError, Topology};
use std::time::{Duration, Instant};

type FollowUp = Result<(Outcome, Option<DateTime<Utc>>), PublishError>;

/// Why a delivery was put off without an attempt (the `reason` label of
/// `webhook_deferred_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferral {
    /// Its host is saturated and has finished nothing for a while.
    HostStalled,
    /// Its host is saturated and a slot is too far off: the wait predicted
    /// too long, or waited out.
    HostSaturated,
    /// Another worker holds this attempt.
    AttemptInFlight,
}

impl From<Busy> for Deferral {
    fn from(busy: Busy) -> Self {
        match busy {
            Busy::Stalled => Deferral::HostStalled,
            Busy::Saturated => Deferral::HostSaturated,
        }
    }
}

impl Deferral {
    pub fn as_str(self) -> &'static str {
        match self {
            Deferral::HostStalled => "host_stalled",
            Deferral::HostSaturated => "host_saturated",
            Deferral::AttemptInFlight => "attempt_in_flight",
        }
    }
}

/// What follows an attempt works with: the parts of the worker it needs,
/// borrowed for one message.
pub(super) struct FollowUps<'a> {
    pub(super) store: &'a Store,
    pub(super) broker: &'a Broker,
    pub(super) delays: &'a DelayQueues,
    pub(super) policy: &'a RetryPolicy,
}

impl FollowUps<'_> {
    /// Record: acts on the decision (queues the retry, dead-letters) and
    /// completes the attempt's row.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn conclude(&self, message: &Message, row: i64, call: &Call, decision: Decision) -> Handled {
        let followed = match decision {
            Decision::Delivered => {
                let latency_ms = call.latency.as_millis() as u64;
                tracing::info!(status = call.status, latency_ms, "delivered");
                metrics::counter!("webhook_delivered_total").increment(1);
                Ok((Outcome::Delivered, None))
            }
            Decision::Gone => {
                tracing::info!("the receiver answered 410 Gone: no more attempts");
                metrics::counter!("webhook_gone_total").increment(1);
                Ok((Outcome::Gone, None))
            }
            Decision::Retry { delay } => self.retry(message, call, delay).await,
            Decision::DeadLetter { reason } => self.dead_letter(message, call, reason).await,
        };
        let finished = |outcome, next_attempt_at| Finished {
            status_code: call.status,
            latency: call.latency,
            error: call.error.clone(),
            next_attempt_at,
            outcome,
        };
        match followed {
            Ok((outcome, next)) => {
                self.record(row, finished(outcome, next)).await;
                Handled::Ack
            }
            Err(error) => {
                self.record(row, finished(Outcome::Unscheduled, None)).await;
                back_off("queueing the follow-up", &error).await
            }
        }
    }

    /// Queues the next attempt after `delay`; the outcome and when it is due.
    async fn retry(&self, message: &Message, call: &Call, delay: Duration) -> FollowUp {
        let properties = message.properties(message.attempt, 0, &[]);
        let wait = self
            .delays
            .park(self.broker, &message.payload, properties, delay)
            .await?;
        let error = call.error.as_deref();
        tracing::info!(
            status = call.status,
            error,
            retry_in_ms = millis(wait),
            "attempt failed; retry queued"
        );
        metrics::counter!("webhook_retried_total").increment(1);
        let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        Ok((Outcome::Retrying, Some(next)))
    }

    /// Parks the event in the dead-letter queue (replayable); the outcome.
    async fn dead_letter(&self, message: &Message, call: &Call, reason: DeadLetterReason) -> FollowUp {
        let mut extra = vec![
            ("x-dead-letter-reason", reason.as_str().to_owned()),
            ("x-dead-lettered-at", shared::time::format(&Utc::now())),
            ("x-event-type", message.kind.as_str().to_owned()),
        ];
        if let Some(status) = call.status {
            extra.push(("x-last-status", status.to_string()));
        }
        if let Some(error) = &call.error {
            extra.push(("x-last-error", error.clone()));
        }
        let properties = message.properties(message.attempt, 0, &extra);
        let queue = Topology::dead_letter_queue(self.delays.queue());
        self.broker
            .publish_to_queue(&queue, &message.payload, properties)
            .await?;
        let (status, error) = (call.status, call.error.as_deref());
        tracing::warn!(reason = reason.as_str(), status, error, "dead-lettered");
        metrics::counter!("webhook_dead_lettered_total", "reason" => reason.as_str()).increment(1);
        let outcome = match reason {
            DeadLetterReason::Refused => Outcome::Refused,
            DeadLetterReason::AttemptsExhausted => Outcome::DeadLettered,
        };
        Ok((outcome, None))
    }

    /// Completes the attempt row. The outcome is already settled (delivered,
    /// or handed on to a queue), so a failing database is retried briefly and
    /// then only logged: giving the message back would POST it again.
    async fn record(&self, row: i64, finished: Finished) {
        let started = Instant::now();
        for attempt in 1..=3 {
            match self.store.finish(row, finished.clone()).await {
                Ok(()) => break,
                Err(error) if attempt == 3 => {
                    tracing::error!(%error, outcome = finished.outcome.as_str(), "could not record the attempt");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        stage("record", started);
    }

    /// A claimed attempt that cannot be made now (its host is saturated):
    /// its row is left `unscheduled`, for the message's next delivery to take
    /// over, and the message is deferred.
    pub(crate) async fn give_back(&self, message: &Message, row: i64, why: Deferral) -> Handled {
        let unscheduled = Finished {
            status_code: None,
            latency: Duration::ZERO,
            error: Some(why.as_str().to_owned()),
            next_attempt_at: None,
            outcome: Outcome::Unscheduled,
        };
        self.record(row, unscheduled).await;
        self.defer(message, why).await
    }

    /// Sends the message round a delay tier without counting an attempt.
    pub(crate) async fn defer(&self, message: &Message, why: Deferral) -> Handled {
        let delay = self.policy.deferral(message.deferrals, random_jitter());
        let properties = message.properties(message.attempt - 1, message.deferrals.saturating_add(1), &[]);
        match self.delays.park(self.broker, &message.payload, properties, delay).await {
            Ok(wait) => {
                tracing::debug!(why = why.as_str(), delay_ms = millis(wait), "deferred");
                metrics::counter!("webhook_deferred_total", "reason" => why.as_str()).increment(1);
                Handled::Ack
            }
            Err(error) => back_off("deferring", &error).await,
        }
    }
}
