//! The expiry sweep (docs/contract.md §13, "Expiry on its own"): an open
//! validation (`new` or `sent`) past `expiresAt` becomes `failed`
//! (`expired`) and its `phone_validation_failed` event goes out once, even
//! when nobody calls validate and no send is pending.
//!
//! Every dispatcher instance runs one; there is no leader. Each pass takes a
//! batch of the oldest expired rows with `FOR UPDATE SKIP LOCKED` (so
//! instances share a backlog instead of queueing on each other's rows), fails
//! them and writes their events with one multi-row insert, commits, and hands
//! the events to the relay (`shared::store::phone_validations::expire`). A
//! full batch is followed by the next at once; otherwise the sweep sleeps
//! `EXPIRY_SWEEP_MS` to twice that (jittered, so instances drift apart). One
//! transaction at a time, on one pooled connection, each a few milliseconds
//! long: a million codes expiring in the same minute is a backlog worked
//! down in short steps, never a long lock or a drained pool for the sends.
//! A validation that a validate call or the dispatcher fails meanwhile is no
//! longer open when the sweep's update looks: one `failed` event each.

use rand::Rng;
use shared::outbox::Relay;
use shared::store::phone_validations;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the sweep needs; [`Sweep::spawn`] starts it.
pub struct Sweep {
    pub pool: PgPool,
    pub relay: Relay,
    /// `EXPIRY_SWEEP_MS`: the shortest pause after a batch that was not full.
    pub every: Duration,
    /// `EXPIRY_SWEEP_BATCH`: validations per transaction.
    pub batch: i64,
    pub cancel: CancellationToken,
}

impl Sweep {
    /// Sweeps until `cancel` fires.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        loop {
            let full = match self.once().await {
                Ok(expired) => expired as i64 >= self.batch,
                Err(error) => {
                    tracing::warn!(%error, "expiry sweep failed; trying again after a pause");
                    false
                }
            };
            if full && !self.cancel.is_cancelled() {
                continue;
            }
            let pause = jittered(self.every);
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One batch: fails what expired, commits, publishes. Returns how many.
    pub async fn once(&self) -> Result<usize, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let events = phone_validations::expire(&mut tx, self.batch).await?;
        tx.commit().await?;
        let expired = events.len();
        metrics::histogram!("expiry_sweep_batch_seconds").record(started.elapsed().as_secs_f64());
        if expired > 0 {
            metrics::counter!("otp_expired_total").increment(expired as u64);
            tracing::info!(expired, "expired validations failed");
            self.relay.publish_soon(events);
        }
        Ok(expired)
    }
}

/// `every` to twice `every`, at random.
fn jittered(every: Duration) -> Duration {
    every + every.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
}
