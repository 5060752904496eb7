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
//! The loop is woken at once by a fan-out in this worker and by requests
//! ending (their slots freed: the claim follows once half of what the last
//! claim took has ended, or [`GATHER`] after the first, so one claim serves
//! several slots and the next batch is on its way while the rest of the
//! last one is still in flight; a dead endpoint's requests, which end only
//! at their timeout, never hold it back), and otherwise polls every
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracker::Tracker;

/// How long a claim is held beyond the request's timeout before another
/// worker may take the delivery over.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// After a request ends, the longest wait for more to end before the next
/// claim (one claim for several freed slots).
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
    /// Signalled by each request that ends (its slot is free).
    freed: Notify,
    /// Requests ended since the last claim.
    ended: AtomicUsize,
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
            freed: Notify::new(),
            ended: AtomicUsize::new(0),
            config: parts.config,
        }
    }

    /// Claims and delivers until `cancel` fires, then lets the requests in
    /// flight finish and be recorded (each is bounded by the timeout).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let retention = tokio::spawn(self.clone().purge_periodically(cancel.clone()));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut last_claim = 0;
        loop {
            while tasks.try_join_next().is_some() {}
            for (endpoint, rest) in self.tracker.stalled() {
                self.pause(&endpoint, rest).await;
            }
            let room = self.max_in_flight.saturating_sub(tasks.len());
            if room > 0 {
                self.ended.store(0, Ordering::Relaxed);
                match self.claim(room).await {
                    Ok(claimed) => {
                        last_claim = claimed.len();
                        for row in claimed {
                            self.tracker.started(&row.endpoint_id);
                            let this = self.clone();
                            tasks.spawn(async move { this.attempt(row).await });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "claiming endpoint deliveries failed");
                        last_claim = 0;
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
                _ = self.freed.notified(), if !tasks.is_empty() => self.gather(last_claim).await,
            }
        }
        while tasks.join_next().await.is_some() {}
        let _ = retention.await;
    }

    /// After a request ended: waits until half of the last claim's requests
    /// have ended (at least one), or [`GATHER`].
    async fn gather(&self, last_claim: usize) {
        let enough = (last_claim / 2).max(1);
        let until = tokio::time::Instant::now() + GATHER;
        while self.ended.load(Ordering::Relaxed) < enough {
            if tokio::time::timeout_at(until, self.freed.notified()).await.is_err() {
                return;
            }
        }
    }

    /// A request ended: its slot is free for the next claim.
    pub(super) fn slot_freed(&self) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        self.freed.notify_one();
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
