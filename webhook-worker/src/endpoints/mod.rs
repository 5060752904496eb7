//! Delivery to webhook endpoints (docs/contract.md §13), from PostgreSQL:
//! every worker runs this loop. It claims due deliveries in batches (`FOR
//! UPDATE SKIP LOCKED`, a lease on each), POSTs them concurrently and
//! records each attempt (batched). Each (event, endpoint) is retried on its
//! own schedule in its row, never through the broker.
//!
//! Fairness: the claim gives each endpoint at most its free slots here
//! (`WEBHOOK_ENDPOINT_CONCURRENCY` in flight per endpoint), so a slow or dead
//! endpoint holds only its own; one that stalls (its slots full and silent
//! while others answer, or no answer several times in a row) is rested
//! (`paused_until`), and the claim, which walks endpoints rather than rows,
//! does not look at its backlog until then.
//!
//! The loop is woken at once by a fan-out in this worker, by a finished
//! request while the last claim found work, and otherwise polls every
//! `WEBHOOK_ENDPOINT_POLL_MS` (an API resend or recovery sets rows due).

mod attempt;
mod keys;
mod retention;
mod tracker;

use crate::config::EndpointConfig;
use crate::plan::RetryPolicy;
use crate::sender::Sender;
use crate::store::EndpointStore;
use keys::KeyCache;
use shared::webhook_secrets::WebhookSecretKeys;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracker::Tracker;

/// How long a claim is held beyond the request's timeout before another
/// worker may take the delivery over.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// After a finished request, how long more completions are gathered before
/// the next claim (one claim for several freed slots).
const GATHER: Duration = Duration::from_millis(10);
/// Pause after a failed claim (the database is down or overloaded).
const CLAIM_BACK_OFF: Duration = Duration::from_secs(1);

pub struct EndpointLoop {
    store: EndpointStore,
    sender: Sender,
    policy: RetryPolicy,
    keys: KeyCache,
    tracker: Tracker,
    config: EndpointConfig,
    allow_private: bool,
    /// Requests in flight from this worker, all endpoints together.
    max_in_flight: usize,
    lease: Duration,
    wake: Arc<Notify>,
}

/// What the loop is built from.
pub struct EndpointParts {
    pub store: EndpointStore,
    pub sender: Sender,
    pub policy: RetryPolicy,
    pub sealing: WebhookSecretKeys,
    pub config: EndpointConfig,
    pub allow_private: bool,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub wake: Arc<Notify>,
}

impl EndpointLoop {
    pub fn new(parts: EndpointParts) -> Self {
        Self {
            store: parts.store,
            sender: parts.sender,
            policy: parts.policy,
            keys: KeyCache::new(parts.sealing),
            tracker: Tracker::new(parts.config.per_endpoint),
            allow_private: parts.allow_private,
            max_in_flight: parts.max_in_flight.max(1),
            lease: parts.timeout + LEASE_MARGIN,
            wake: parts.wake,
            config: parts.config,
        }
    }

    /// Claims and delivers until `cancel` fires, then lets the requests in
    /// flight finish and be recorded (each is bounded by the timeout).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let retention = tokio::spawn(self.clone().purge_periodically(cancel.clone()));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut found_work = false;
        loop {
            while tasks.try_join_next().is_some() {}
            for (endpoint, rest) in self.tracker.stalled() {
                self.pause(&endpoint, rest).await;
            }
            let room = self.max_in_flight.saturating_sub(tasks.len());
            if room > 0 {
                match self.claim(room).await {
                    Ok(claimed) => {
                        found_work = !claimed.is_empty();
                        for row in claimed {
                            self.tracker.started(&row.endpoint_id);
                            let this = self.clone();
                            tasks.spawn(async move { this.attempt(row).await });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "claiming endpoint deliveries failed");
                        found_work = false;
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(CLAIM_BACK_OFF) => continue,
                        }
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
                Some(_) = tasks.join_next(), if found_work && !tasks.is_empty() => {
                    let until = tokio::time::Instant::now() + GATHER;
                    while let Ok(Some(_)) = tokio::time::timeout_at(until, tasks.join_next()).await {}
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        let _ = retention.await;
    }

    async fn claim(&self, room: usize) -> Result<Vec<crate::store::ClaimedDelivery>, sqlx::Error> {
        let started = Instant::now();
        let busy = self.tracker.busy();
        let per_endpoint = i32::try_from(self.config.per_endpoint).unwrap_or(i32::MAX);
        let limit = i64::try_from(room).unwrap_or(i64::MAX);
        let claimed = self.store.claim(&busy, per_endpoint, limit, self.lease).await;
        metrics::histogram!("webhook_stage_seconds", "stage" => "endpoint_claim")
            .record(started.elapsed().as_secs_f64());
        claimed
    }
}
