//! The upkeep of early receipts (`shared::store::receipts`), every
//! `EARLY_RECEIPT_SWEEP_MS` on every dispatcher instance (no leader: applying a kept receipt
//! takes its row, and the purge skips rows another instance holds). It
//! applies receipts whose send was recorded while a process died between
//! its commit and its look for the other side, and purges, in small
//! batches, receipts kept longer than `EARLY_RECEIPT_TTL`.

use shared::outbox::Relay;
use shared::store::receipts::{self, EARLY_RECEIPT_TTL};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the sweep needs; [`Sweep::spawn`] starts it.
pub struct Sweep {
    pub pool: PgPool,
    pub relay: Relay,
    pub every: Duration,
    pub cancel: CancellationToken,
}

impl Sweep {
    /// Sweeps every `every` until `cancel` fires.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        spawn(self.pool, self.relay, self.every, self.cancel)
    }
}

/// Sweeps every `every` until `cancel` fires.
fn spawn(pool: PgPool, relay: Relay, every: Duration, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match receipts::sweep(&pool, EARLY_RECEIPT_TTL).await {
                Ok((applied, purged)) => {
                    if !applied.is_empty() || purged > 0 {
                        tracing::info!(applied = applied.len(), purged, "early receipts swept");
                    }
                    relay.publish_soon(applied.into_iter().flat_map(receipts::Applied::messages));
                }
                Err(error) => tracing::warn!(%error, "early receipt sweep failed; trying again next tick"),
            }
        }
    })
}
