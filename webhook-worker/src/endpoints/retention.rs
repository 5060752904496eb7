//! Retention (`WEBHOOK_RETENTION_DAYS`): messages (their deliveries go with
//! them) and attempts older than that are deleted by any worker, in small
//! batches so no statement holds many locks or writes much WAL at once.

use super::EndpointLoop;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows per statement.
pub const PURGE_BATCH: i64 = 1000;
/// Statements in one purge at most (the rest waits for the next purge).
const MAX_STEPS: usize = 1000;

impl EndpointLoop {
    /// Purges every `WEBHOOK_PURGE_INTERVAL_SECS` until `cancel` fires.
    pub(super) async fn purge_periodically(self: Arc<Self>, cancel: CancellationToken) {
        let every = self.config.purge_every;
        // Workers started together spread their purges over the interval.
        let first = every.mul_f64(rand::random::<f64>()).min(every);
        let mut wait = first;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = every;
            let (messages, attempts) = self.purge(&cancel).await;
            if messages + attempts > 0 {
                tracing::info!(
                    messages,
                    attempts,
                    "purged webhook messages and attempts past their retention"
                );
            }
        }
    }

    /// Deletes what is past the retention, a batch at a time; (messages, attempts).
    pub(super) async fn purge(&self, cancel: &CancellationToken) -> (u64, u64) {
        let (mut messages, mut attempts) = (0, 0);
        for _ in 0..MAX_STEPS {
            if cancel.is_cancelled() {
                break;
            }
            match self.store.purge(self.config.retention, PURGE_BATCH).await {
                Ok((m, a)) => {
                    messages += m;
                    attempts += a;
                    metrics::counter!("webhook_purged_total", "what" => "messages").increment(m);
                    metrics::counter!("webhook_purged_total", "what" => "attempts").increment(a);
                    if m < PURGE_BATCH as u64 && a < PURGE_BATCH as u64 {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "purging old webhook messages failed");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (messages, attempts)
    }
}
