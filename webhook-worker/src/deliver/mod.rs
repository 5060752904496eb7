//! The delivery pipeline, one stage per function: receive → decode → load →
//! claim → act (the signed POST) → decide → record → ack. The decision is
//! [`RetryPolicy::decide`](crate::plan::RetryPolicy::decide), pure; what
//! follows it (a retry, a dead letter, the record) is in `followup.rs`, the
//! load stage in `load.rs`.
//!
//! Nothing waits on a held message: a retry is republished into a delay tier
//! (with confirm) before the original is acked, and a delivery to a saturated
//! host is deferred the same way.

mod followup;
mod load;
mod stage;

use crate::body::WebhookBody;
use crate::event::{EventKind, Message};
use crate::fanout::{About, FanOut};
use crate::hosts::HostLimiter;
use crate::plan::{random_jitter, Attempted, RetryPolicy};
use crate::sender::{Call, Sender, Signed};
use crate::signing::signature_header;
use crate::ssrf::{self, Refused};
use crate::store::{AttemptKey, Claim, Store};
use chrono::Utc;
use followup::{Deferral, FollowUps};
use load::{Loaded, Loader, Subject};
use shared::amqp::retry::DelayQueues;
use shared::amqp::{Broker, Delivery, Handled};
use shared::process::Handler;
use stage::{back_off, stage};
use std::time::Instant;
use tracing::Instrument;

/// The validation's own URL wins over its flow's.
pub fn choose_url<'a>(validation_url: Option<&'a str>, flow_url: Option<&'a str>) -> Option<&'a str> {
    validation_url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .or_else(|| flow_url.map(str::trim).filter(|u| !u.is_empty()))
}

/// Everything a delivery needs; shared by all in-flight handlers.
pub struct Deliverer {
    pub store: Store,
    pub broker: Broker,
    /// The work queue's delay tiers (its dead-letter queue is named after it too).
    pub delays: DelayQueues,
    pub policy: RetryPolicy,
    pub sender: Sender,
    pub hosts: HostLimiter,
    pub allow_private: bool,
    /// Writes each event's deliveries to webhook endpoints (docs/contract.md §13).
    pub fanout: FanOut,
}

impl Handler for Deliverer {
    /// Receive: one delivery from the consumer, settled by what this returns.
    async fn handle(&self, delivery: Delivery) -> Handled {
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
            event_id = %message.event_id,
            subject_id = %message.subject_id,
            attempt = message.attempt,
            round = message.round,
        );
        self.process(&message).instrument(span).await
    }

    fn delays(&self) -> &DelayQueues {
        &self.delays
    }
}

impl Deliverer {
    async fn process(&self, message: &Message) -> Handled {
        // An event is fanned out to its endpoints when it is first handled,
        // not again when its `webhookUrl` delivery comes back from a delay
        // tier; lifecycle events go to endpoints only.
        let lifecycle = matches!(message.kind, EventKind::Lifecycle(_));
        if lifecycle || (message.attempt == 1 && message.deferrals == 0) {
            let subject = match self.loader().subject(message).await {
                Ok(subject) => subject,
                Err(settled) => return settled,
            };
            if let Err(settled) = self.fan_out(message, &subject).await {
                return settled;
            }
            if lifecycle {
                return Handled::Ack;
            }
            return match self.loader().target(subject).await {
                Ok(loaded) => self.deliver(message, loaded).await,
                Err(settled) => settled,
            };
        }
        // A dead or backed-up host's deliveries are put off before any
        // database work: where the event says it goes is enough to know that.
        if let Some(busy) = self.hinted_host(message).and_then(|host| self.hosts.busy(&host)) {
            return self.follow_up().defer(message, busy.into()).await;
        }
        match self.loader().load(message).await {
            Ok(loaded) => self.deliver(message, loaded).await,
            Err(settled) => settled,
        }
    }

    /// Fan-out: the event's deliveries to webhook endpoints, written once.
    #[tracing::instrument(skip_all)]
    async fn fan_out(&self, message: &Message, subject: &Subject) -> Result<(), Handled> {
        let started = Instant::now();
        let about = About {
            object: &subject.object,
            client: &subject.client,
            project: subject.project.as_deref(),
        };
        match self.fanout.fan_out(message, about).await {
            Ok(_) => {
                stage("fan_out", started);
                Ok(())
            }
            Err(error) => Err(back_off("fanning out to endpoints", &error).await),
        }
    }

    /// The `webhookUrl` delivery (docs/contract.md §8) of a loaded event.
    async fn deliver(&self, message: &Message, loaded: Loaded) -> Handled {
        let flow_url = loaded.target.flow_url.as_deref();
        let Some(raw_url) = choose_url(loaded.own_url.as_deref(), flow_url) else {
            tracing::debug!("no webhook URL: nothing to deliver");
            metrics::counter!("webhook_skipped_total").increment(1);
            return Handled::Ack;
        };
        let checked = url::Url::parse(raw_url)
            .map_err(|_| Refused::InvalidUrl)
            .and_then(|url| ssrf::check_url(&url, self.allow_private).map(|()| url));

        // Fairness: a dead or backed-up host's deliveries wait in a delay
        // tier before any work is done for them; a busy one gets a slot once
        // the attempt is claimed (the slot is held for the POST alone).
        let host = checked.as_ref().ok().map(host_key);
        if let Some(busy) = host.as_deref().and_then(|host| self.hosts.busy(host)) {
            return self.follow_up().defer(message, busy.into()).await;
        }
        let row = match self.claim(message, &loaded, raw_url).await {
            Ok(row) => row,
            Err(settled) => return settled,
        };
        let permit = match &host {
            Some(host) => match self.hosts.acquire(host).await {
                Ok(permit) => Some(permit),
                Err(busy) => return self.follow_up().give_back(message, row, busy.into()).await,
            },
            None => None,
        };
        let call = match checked {
            Ok(url) => self.call(message, &loaded, &url).await,
            Err(refused) => Call::not_made(Attempted::Refused, refused.to_string()),
        };
        drop(permit);
        metrics::histogram!("webhook_request_duration_seconds").record(call.latency.as_secs_f64());

        let decision = self.policy.decide(message.attempt, &call.result, random_jitter());
        self.follow_up().conclude(message, row, &call, decision).await
    }

    fn loader(&self) -> Loader<'_> {
        Loader { store: &self.store }
    }

    fn follow_up(&self) -> FollowUps<'_> {
        FollowUps {
            store: &self.store,
            broker: &self.broker,
            delays: &self.delays,
            policy: &self.policy,
        }
    }

    /// The host the event says it goes to: its own URL, or its flow's as
    /// last loaded. Only ever used to put a delivery off.
    fn hinted_host(&self, message: &Message) -> Option<String> {
        let hint = &message.hint;
        let cached;
        let flow_url = match (&hint.client, &hint.flow) {
            (Some(client), Some(flow)) => {
                cached = self.store.cached_target(client, flow);
                cached.as_ref().and_then(|target| target.flow_url.as_deref())
            }
            _ => None,
        };
        let url = choose_url(hint.own_url.as_deref(), flow_url)?;
        url::Url::parse(url).ok().map(|url| host_key(&url))
    }

    /// Idempotency: claims this attempt unless it was made already or the
    /// event was delivered. `Ok` is the attempt's row; `Err` settles the message.
    #[tracing::instrument(skip_all)]
    async fn claim(&self, message: &Message, loaded: &Loaded, url: &str) -> Result<i64, Handled> {
        let key = AttemptKey {
            event_id: message.event_id.as_str(),
            event_type: message.kind.as_str(),
            validation_id: &loaded.subject,
            client_id: &loaded.client,
            url,
            round: i32::try_from(message.round).unwrap_or(i32::MAX),
            attempt: i32::try_from(message.attempt).unwrap_or(i32::MAX),
        };
        let started = Instant::now();
        let claimed = self.store.claim(&key).await;
        stage("claim", started);
        match claimed {
            Ok(Claim::Claimed(row)) => Ok(row),
            Ok(Claim::AlreadyDelivered | Claim::AlreadyDone) => {
                tracing::info!("already handled; acknowledging the duplicate");
                metrics::counter!("webhook_duplicates_total").increment(1);
                Err(Handled::Ack)
            }
            Ok(Claim::Busy) => Err(self.follow_up().defer(message, Deferral::AttemptInFlight).await),
            Err(error) => Err(back_off("claiming the attempt", &error).await),
        }
    }

    /// Act: the signed POST.
    #[tracing::instrument(skip_all)]
    async fn call(&self, message: &Message, loaded: &Loaded, url: &url::Url) -> Call {
        let body = WebhookBody {
            kind: message.kind.as_str(),
            object: &loaded.object,
            event_id: &message.event_id,
            occurred_at: message.occurred_at,
        };
        // Serializing plain data into a Vec cannot fail; an empty body would be refused by the receiver.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let signed = Signed {
            id: message.event_id.as_str(),
            timestamp,
            signature: signature_header(&loaded.target.keys, message.event_id.as_str(), timestamp, &body),
        };
        let started = Instant::now();
        let call = self.sender.post(url, &signed, body).await;
        stage("post", started);
        call
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
