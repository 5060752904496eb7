//! The delivery pipeline, one stage per function: receive → decode → load →
//! decide → act → record → ack. The decision itself is
//! [`RetryPolicy::decide`](crate::policy::RetryPolicy::decide), pure.
//!
//! Nothing waits on a held message: a retry is republished into a delay tier
//! (with confirm) before the original is acked, and a delivery to a saturated
//! host is deferred the same way.

use crate::hosts::HostLimiter;
use crate::message::Message;
use crate::policy::{random_jitter, Attempted, DeadLetterReason, Decision, RetryPolicy};
use crate::records::{self, AttemptKey, Claim, Finished, LoadError, Outcome, Target, TargetCache};
use crate::sender::{Call, Sender, Signed};
use crate::signing::signature_header;
use crate::ssrf::{self, Refused};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::amqp::retry::DelayQueues;
use shared::amqp::{Broker, Delivery, Handled, PublishError, Topology};
use shared::domain::PhoneValidation;
use shared::events::ValidationEventType;
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Pause before giving a message back when the database or broker failed,
/// so an outage does not spin the queue.
const BACK_OFF: Duration = Duration::from_secs(1);

/// The body POSTed to the client (CONTRACT §8).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody<'a> {
    #[serde(rename = "type")]
    pub kind: ValidationEventType,
    pub object: &'a PhoneValidation,
    pub event_id: &'a ObjectId,
    #[serde(serialize_with = "shared::time::serialize")]
    pub occurred_at: DateTime<Utc>,
}

/// The validation's own URL wins over its flow's.
pub fn choose_url<'a>(validation_url: Option<&'a str>, flow_url: Option<&'a str>) -> Option<&'a str> {
    validation_url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .or_else(|| flow_url.map(str::trim).filter(|u| !u.is_empty()))
}

/// Everything a delivery needs; shared by all in-flight handlers.
pub struct Deliverer {
    pub pool: PgPool,
    pub broker: Broker,
    /// The work queue's delay tiers (its dead-letter queue is named after it too).
    pub delays: DelayQueues,
    pub policy: RetryPolicy,
    pub sender: Sender,
    pub hosts: HostLimiter,
    pub targets: TargetCache,
    pub allow_private: bool,
    /// An `in_flight` claim older than this belongs to a worker that died.
    pub stale_after: Duration,
}

impl Deliverer {
    /// Receive: one delivery from the consumer, settled by what this returns.
    pub async fn handle(&self, delivery: Delivery) -> Handled {
        let message = match Message::decode(&delivery.data, &delivery.properties) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, "undecodable webhook message; dead-lettering it");
                metrics::counter!("webhook_undecodable_total").increment(1);
                return Handled::Reject;
            }
        };
        let span = tracing::info_span!(
            "webhook",
            event_id = %message.event.event_id,
            validation_id = %message.event.data.id,
            attempt = message.attempt,
            round = message.round,
        );
        self.process(&message).instrument(span).await
    }

    #[tracing::instrument(skip_all)]
    async fn process(&self, message: &Message) -> Handled {
        let event = &message.event;
        let target = match self.load(message).await {
            Ok(target) => target,
            Err(settled) => return settled,
        };
        let Some(raw_url) = choose_url(event.data.webhook_url.as_deref(), target.flow_url.as_deref()) else {
            tracing::debug!("no webhook URL: nothing to deliver");
            metrics::counter!("webhook_skipped_total").increment(1);
            return Handled::Ack;
        };
        let checked = url::Url::parse(raw_url)
            .map_err(|_| Refused::InvalidUrl)
            .and_then(|url| ssrf::check_url(&url, self.allow_private).map(|()| url));

        // Fairness: a slot on the host, or the message waits in a delay tier.
        let permit = match &checked {
            Ok(url) => match self.hosts.acquire(&host_key(url)).await {
                Some(permit) => Some(permit),
                None => return self.defer(message, "host saturated").await,
            },
            Err(_) => None,
        };
        let row = match self.claim(message, raw_url).await {
            Ok(row) => row,
            Err(settled) => return settled,
        };
        let call = match checked {
            Ok(url) => self.call(message, &target, &url).await,
            Err(refused) => Call {
                result: Attempted::Refused,
                status: None,
                latency: Duration::ZERO,
                error: Some(refused.to_string()),
            },
        };
        drop(permit);
        metrics::histogram!("webhook_request_duration_seconds").record(call.latency.as_secs_f64());

        let decision = self.policy.decide(message.attempt, &call.result, random_jitter());
        self.conclude(message, row, &call, decision).await
    }

    /// Load: the client's signing keys and the flow's URL. `Err` settles the message.
    #[tracing::instrument(skip_all)]
    async fn load(&self, message: &Message) -> Result<Arc<Target>, Handled> {
        let data = &message.event.data;
        match self.targets.get(&self.pool, &data.client, &data.project_flow).await {
            Ok(Some(target)) => Ok(target),
            Ok(None) => {
                tracing::error!(client_id = %data.client, "the event's client does not exist; dead-lettering it");
                Err(Handled::Reject)
            }
            Err(LoadError::Secret(error)) => {
                tracing::error!(client_id = %data.client, %error, "dead-lettering the event");
                Err(Handled::Reject)
            }
            Err(LoadError::Database(error)) => Err(back_off("loading the client", &error).await),
        }
    }

    /// Idempotency: claims this attempt unless it was made already or the
    /// event was delivered. `Ok` is the attempt's row; `Err` settles the message.
    #[tracing::instrument(skip_all)]
    async fn claim(&self, message: &Message, url: &str) -> Result<i64, Handled> {
        let event = &message.event;
        let key = AttemptKey {
            event_id: event.event_id.as_str(),
            event_type: event.kind.as_str(),
            validation_id: &event.data.id,
            client_id: &event.data.client,
            url,
            round: i32::try_from(message.round).unwrap_or(i32::MAX),
            attempt: i32::try_from(message.attempt).unwrap_or(i32::MAX),
        };
        match records::claim(&self.pool, &key, self.stale_after).await {
            Ok(Claim::Claimed(row)) => Ok(row),
            Ok(Claim::AlreadyDelivered | Claim::AlreadyDone) => {
                tracing::info!("already handled; acknowledging the duplicate");
                metrics::counter!("webhook_duplicates_total").increment(1);
                Err(Handled::Ack)
            }
            Ok(Claim::Busy) => Err(self.defer(message, "attempt in flight elsewhere").await),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                tracing::error!("the event's validation does not exist; dead-lettering it");
                Err(Handled::Reject)
            }
            Err(error) => Err(back_off("claiming the attempt", &error).await),
        }
    }

    /// Act: the signed POST.
    #[tracing::instrument(skip_all)]
    async fn call(&self, message: &Message, target: &Target, url: &url::Url) -> Call {
        let event = &message.event;
        let body = WebhookBody {
            kind: event.kind,
            object: &event.data,
            event_id: &event.event_id,
            occurred_at: event.occurred_at,
        };
        // Serializing plain data into a Vec cannot fail; an empty body would be refused by the receiver.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let signed = Signed {
            id: event.event_id.as_str(),
            timestamp,
            signature: signature_header(&target.keys, event.event_id.as_str(), timestamp, &body),
        };
        self.sender.post(url, &signed, body).await
    }

    /// Record: acts on the decision (queues the retry, dead-letters) and
    /// completes the attempt's row.
    #[tracing::instrument(skip_all)]
    async fn conclude(&self, message: &Message, row: i64, call: &Call, decision: Decision) -> Handled {
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
                self.record(row, &finished(outcome, next)).await;
                Handled::Ack
            }
            Err(error) => {
                self.record(row, &finished(Outcome::Unscheduled, None)).await;
                back_off("queueing the follow-up", &error).await
            }
        }
    }

    /// Queues the next attempt after `delay`; the outcome and when it is due.
    async fn retry(
        &self,
        message: &Message,
        call: &Call,
        delay: Duration,
    ) -> Result<(Outcome, Option<DateTime<Utc>>), PublishError> {
        let properties = message.properties(message.attempt, 0, &[]);
        let wait = self
            .delays
            .park(&self.broker, &message.payload, properties, delay)
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

    /// Completes the attempt row. The outcome is already settled (delivered,
    /// or handed on to a queue), so a failing database is retried briefly and
    /// then only logged: giving the message back would POST it again.
    async fn record(&self, row: i64, finished: &Finished) {
        for attempt in 1..=3 {
            match records::finish(&self.pool, row, finished).await {
                Ok(_) => return,
                Err(error) if attempt == 3 => {
                    tracing::error!(%error, outcome = finished.outcome.as_str(), "could not record the attempt");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Sends the message round a delay tier without counting an attempt.
    async fn defer(&self, message: &Message, why: &'static str) -> Handled {
        let delay = self.policy.deferral(message.deferrals, random_jitter());
        let properties = message.properties(message.attempt - 1, message.deferrals.saturating_add(1), &[]);
        match self
            .delays
            .park(&self.broker, &message.payload, properties, delay)
            .await
        {
            Ok(wait) => {
                tracing::debug!(why, delay_ms = millis(wait), "deferred");
                metrics::counter!("webhook_deferred_total").increment(1);
                Handled::Ack
            }
            Err(error) => back_off("deferring", &error).await,
        }
    }

    /// Parks the event in the dead-letter queue (replayable); the outcome.
    async fn dead_letter(
        &self,
        message: &Message,
        call: &Call,
        reason: DeadLetterReason,
    ) -> Result<(Outcome, Option<DateTime<Utc>>), PublishError> {
        let mut extra = vec![
            ("x-dead-letter-reason", reason.as_str().to_owned()),
            ("x-dead-lettered-at", shared::time::format(&Utc::now())),
            ("x-event-type", message.event.kind.as_str().to_owned()),
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
}

/// `host:port`: the unit of fairness.
fn host_key(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

async fn back_off<E: std::fmt::Display + Sync>(what: &'static str, error: &E) -> Handled {
    tracing::warn!(%error, "{what} failed; the message goes back to the queue");
    tokio::time::sleep(BACK_OFF).await;
    Handled::Requeue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_url_wins_over_the_flow_url() {
        assert_eq!(
            choose_url(Some("https://a/x"), Some("https://b/y")),
            Some("https://a/x")
        );
        assert_eq!(choose_url(None, Some("https://b/y")), Some("https://b/y"));
        assert_eq!(choose_url(Some("  "), Some("https://b/y")), Some("https://b/y"));
        assert_eq!(choose_url(None, None), None);
    }

    #[test]
    fn hosts_are_keyed_with_their_port() {
        let url = url::Url::parse("https://hooks.example.com/a").unwrap();
        assert_eq!(host_key(&url), "hooks.example.com:443");
        let url = url::Url::parse("http://127.0.0.1:8081/a").unwrap();
        assert_eq!(host_key(&url), "127.0.0.1:8081");
    }
}
