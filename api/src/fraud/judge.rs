//! The guard's upkeep, every `FRAUD_GUARD_INTERVAL_MS` on one API instance
//! at a time (a transaction-scoped advisory lock; the others skip the
//! tick): fold the appended counts (`stats::fold`), prune what fell out of
//! the window, judge each prefix and calling code of each flow on its sends
//! older than the grace period (`shared::store::fraud::judge`, which the
//! dispatcher shares), and record new blocks with their
//! `fraud_guard_blocked` events in the same transaction;
//! then vacuum what the fold left dead (`stats::vacuum`).

use super::GuardConfig;
use shared::outbox::{OutboxMessage, Relay};
use shared::store::fraud::judge;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LEADER: &str = "SELECT pg_try_advisory_xact_lock($1)";
const PRUNE_COUNTERS: &str =
    "DELETE FROM fraud_counters WHERE bucket < now() - make_interval(secs => $1) - interval '1 second'";
const PRUNE_WINDOWS: &str = "DELETE FROM rate_limit_windows WHERE window_end < now() - interval '1 minute'";

/// The advisory lock of the upkeep (any constant no other code uses).
const LOCK: i64 = 0x6f74_7066_7261_7564; // "otpfraud"

/// Runs the upkeep until `cancel` fires.
pub fn spawn(
    pool: PgPool,
    relay: Relay,
    config: GuardConfig,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(until_next_tick(config.interval, std::time::SystemTime::now())) => {}
            }
            match tick(&pool, &config).await {
                Ok(events) => relay.publish_soon(events),
                Err(error) => tracing::warn!(%error, "fraud guard upkeep failed; trying again next tick"),
            }
            if let Ok(active) = super::blocks::count_active(&pool).await {
                metrics::gauge!("fraud_guard_active_blocks").set(active as f64);
            }
        }
    })
}

/// How long until the next tick: just after the wall clock crosses a
/// multiple of `interval` (every instance's clock, and PostgreSQL's, agree
/// to well under `TICK_LAG`). Sends are judged by whole seconds of creation
/// (`JUDGED`), so a tick just after a second turns judges them as soon as
/// the grace period lets it, instead of up to an interval later.
fn until_next_tick(interval: Duration, now: std::time::SystemTime) -> Duration {
    let interval_ms = interval.as_millis().max(1);
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let wait = interval_ms - since_epoch % interval_ms;
    Duration::from_millis(u64::try_from(wait).unwrap_or(1000)) + TICK_LAG
}

/// After a second turns, time for the last sends' changes to be committed.
const TICK_LAG: Duration = Duration::from_millis(100);

/// One tick; the events of the blocks it made (already in the outbox).
pub async fn tick(pool: &PgPool, config: &GuardConfig) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let leader: bool = sqlx::query_scalar(LEADER).bind(LOCK).fetch_one(&mut *tx).await?;
    if !leader {
        return Ok(Vec::new());
    }
    let folded = crate::stats::fold(&mut tx, config.window).await?;
    prune(&mut tx, config.window).await?;
    let blocks = judge::judge_all(&mut tx, config).await?;
    tx.commit().await?;
    if folded > 0 {
        crate::stats::vacuum(pool).await?;
    }
    blocks.iter().for_each(judge::NewBlock::announce);
    Ok(blocks.into_iter().map(|block| block.event).collect())
}

async fn prune(conn: &mut PgConnection, window: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(PRUNE_COUNTERS)
        .bind(window.as_secs_f64())
        .execute(&mut *conn)
        .await?;
    sqlx::query(PRUNE_WINDOWS).execute(&mut *conn).await?;
    Ok(())
}

/// The judge's statements, for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        ("judge.leader", LEADER.to_owned()),
        ("judge.prune_counters", PRUNE_COUNTERS.to_owned()),
        ("judge.prune_windows", PRUNE_WINDOWS.to_owned()),
    ]
    .map(|(name, sql)| (name.to_owned(), sql))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn ticks_land_just_after_the_interval_turns() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let second = Duration::from_secs(1);
        assert_eq!(
            until_next_tick(second, at(1_000_250)),
            Duration::from_millis(750) + TICK_LAG
        );
        assert_eq!(until_next_tick(second, at(1_000_000)), second + TICK_LAG);
        assert_eq!(
            until_next_tick(Duration::from_millis(500), at(1_000_900)),
            Duration::from_millis(100) + TICK_LAG
        );
        let before_epoch = UNIX_EPOCH - second;
        assert!(until_next_tick(second, before_epoch) <= second + TICK_LAG);
        assert!(until_next_tick(second, SystemTime::now()) <= second + TICK_LAG);
    }
}
