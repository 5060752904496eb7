//! The guard's upkeep, every `FRAUD_GUARD_INTERVAL_MS` on one API instance
//! at a time (a transaction-scoped advisory lock; the others skip the
//! tick): fold the appended counts (`stats::fold`), prune what fell out of
//! the window, judge each prefix and calling code of each flow on its sends
//! older than the grace period (`shared::domain::fraud`), and record new
//! blocks with their `fraud_guard_blocked` events in the same transaction;
//! then vacuum what the fold left dead (`stats::vacuum`).

use super::GuardConfig;
use shared::domain::fraud::{self, Counts, GuardMode, Verdict};
use shared::events::FraudGuardBlocked;
use shared::outbox::{self, OutboxMessage, Relay};
use shared::ObjectId;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LEADER: &str = "SELECT pg_try_advisory_xact_lock($1)";
const PRUNE_COUNTERS: &str =
    "DELETE FROM fraud_counters WHERE bucket < now() - make_interval(secs => $1) - interval '1 second'";
const PRUNE_WINDOWS: &str = "DELETE FROM rate_limit_windows WHERE window_end < now() - interval '1 minute'";
const RECORD_BLOCK: &str =
    "INSERT INTO fraud_blocks (id, client_id, prefix, project_flow_id, reason, sent, validated, until)
         SELECT $1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8)
          WHERE NOT EXISTS (SELECT 1 FROM fraud_blocks
                             WHERE client_id = $2 AND prefix = $3 AND lifted_at IS NULL AND until > now())";

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
    let blocks = judge(&mut tx, config).await?;
    let mut events = Vec::with_capacity(blocks.len());
    for block in &blocks {
        events.push(outbox::enqueue(&mut tx, &FraudGuardBlocked::new(block.id.clone())).await?);
    }
    tx.commit().await?;
    if folded > 0 {
        crate::stats::vacuum(pool).await?;
    }
    for block in &blocks {
        metrics::counter!("fraud_guard_blocked_total", "reason" => block.reason).increment(1);
        tracing::warn!(
            client_id = %block.client, prefix = %block.prefix, reason = block.reason,
            sent = block.counts.sent, validated = block.counts.validated,
            "fraud guard blocked a prefix"
        );
    }
    Ok(events)
}

async fn prune(conn: &mut PgConnection, window: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(PRUNE_COUNTERS)
        .bind(window.as_secs_f64())
        .execute(&mut *conn)
        .await?;
    sqlx::query(PRUNE_WINDOWS).execute(&mut *conn).await?;
    Ok(())
}

/// A block the judge made.
struct NewBlock {
    id: ObjectId,
    client: ObjectId,
    prefix: String,
    reason: &'static str,
    counts: Counts,
}

/// Judged counts of one flow's traffic to one key (prefix or calling code).
#[derive(sqlx::FromRow)]
struct Judged {
    client_id: ObjectId,
    project_flow_id: ObjectId,
    key: String,
    sent: i64,
    validated: i64,
    mode: Option<String>,
}

fn counts(sent: i64, validated: i64) -> Counts {
    Counts {
        sent: u64::try_from(sent).unwrap_or(0),
        validated: u64::try_from(validated).unwrap_or(0),
    }
}

/// The judged window: 1-second buckets whose every send is older than the grace period.
const JUDGED: &str = "c.bucket >= now() - make_interval(secs => $1)
      AND c.bucket + interval '1 second' <= now() - make_interval(secs => $2)";

static JUDGE_CLIENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.client_id, sum(c.sent)::bigint, sum(c.validated)::bigint FROM fraud_counters c
          WHERE {JUDGED} GROUP BY c.client_id"
    )
});

// A key's sends count from its last block's end (an active block's end
// is ahead: nothing counts); a prefix under an active block of its
// calling code is not judged on its own, and a calling code is judged
// without its prefixes blocked in the window (a blocked attack on one
// prefix must not make its country look bad to its legitimate users).
fn since_last_block(key: &str) -> String {
    format!(
        "c.bucket >= coalesce((SELECT max(coalesce(b.lifted_at, b.until)) FROM fraud_blocks b
                                WHERE b.client_id = c.client_id AND b.prefix = {key}), '-infinity')"
    )
}

const MODE: &str = "f.phone->>'fraudGuard' AS mode";

static JUDGE_PREFIXES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.client_id, c.project_flow_id, c.prefix AS key, sum(c.sent)::bigint AS sent,
                sum(c.validated)::bigint AS validated, {MODE}
           FROM fraud_counters c JOIN project_flows f ON f.id = c.project_flow_id
          WHERE {JUDGED} AND {} AND {}
          GROUP BY c.client_id, c.project_flow_id, c.prefix, f.phone->>'fraudGuard'",
        since_last_block("c.prefix"),
        since_last_block("c.country_code"),
    )
});

static JUDGE_COUNTRIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.client_id, c.project_flow_id, c.country_code AS key, sum(c.sent)::bigint AS sent,
                sum(c.validated)::bigint AS validated, {MODE}
           FROM fraud_counters c JOIN project_flows f ON f.id = c.project_flow_id
          WHERE {JUDGED} AND {}
            AND NOT EXISTS (SELECT 1 FROM fraud_blocks b WHERE b.client_id = c.client_id AND b.prefix = c.prefix
                               AND b.blocked_at > now() - make_interval(secs => $1))
          GROUP BY c.client_id, c.project_flow_id, c.country_code, f.phone->>'fraudGuard'",
        since_last_block("c.country_code"),
    )
});

async fn judge(conn: &mut PgConnection, config: &GuardConfig) -> Result<Vec<NewBlock>, sqlx::Error> {
    let (window, grace) = (config.window.as_secs_f64(), config.grace.as_secs_f64());
    let clients: Vec<(ObjectId, i64, i64)> = sqlx::query_as(&JUDGE_CLIENTS)
        .bind(window)
        .bind(grace)
        .fetch_all(&mut *conn)
        .await?;
    if clients.is_empty() {
        return Ok(Vec::new());
    }
    let clients: HashMap<ObjectId, Counts> = clients.into_iter().map(|(c, s, v)| (c, counts(s, v))).collect();
    // A key's sends count from its last block's end (an active block's end
    // is ahead: nothing counts); a prefix under an active block of its
    // calling code is not judged on its own, and a calling code is judged
    // without its prefixes blocked in the window (a blocked attack on one
    // prefix must not make its country look bad to its legitimate users).
    let prefixes: Vec<Judged> = sqlx::query_as(&JUDGE_PREFIXES)
        .bind(window)
        .bind(grace)
        .fetch_all(&mut *conn)
        .await?;
    let countries: Vec<Judged> = sqlx::query_as(&JUDGE_COUNTRIES)
        .bind(window)
        .bind(grace)
        .fetch_all(&mut *conn)
        .await?;

    let mut blocks = Vec::new();
    let verdicts = prefixes
        .iter()
        .map(|j| (j, fraud::judge_prefix as fn(GuardMode, Counts, Counts) -> Verdict))
        .chain(
            countries
                .iter()
                .map(|j| (j, fraud::judge_country as fn(GuardMode, Counts, Counts) -> Verdict)),
        );
    for (judged, verdict_of) in verdicts {
        let mode = judged
            .mode
            .as_deref()
            .and_then(|m| serde_json::from_value(serde_json::Value::String(m.to_owned())).ok())
            .unwrap_or_default();
        let client = clients.get(&judged.client_id).copied().unwrap_or_default();
        let own = counts(judged.sent, judged.validated);
        let Verdict::Block { reason } = verdict_of(mode, own, client) else {
            continue;
        };
        if let Some(block) = record(conn, judged, reason, own, config).await? {
            blocks.push(block);
        }
    }
    Ok(blocks)
}

/// Records a block unless the key is blocked already (by another flow's
/// verdict in this same tick, say).
async fn record(
    conn: &mut PgConnection,
    judged: &Judged,
    reason: &'static str,
    own: Counts,
    config: &GuardConfig,
) -> Result<Option<NewBlock>, sqlx::Error> {
    let id = ObjectId::new();
    let made = sqlx::query(RECORD_BLOCK)
        .bind(&id)
        .bind(&judged.client_id)
        .bind(&judged.key)
        .bind(&judged.project_flow_id)
        .bind(reason)
        .bind(judged.sent)
        .bind(judged.validated)
        .bind(config.block.as_secs_f64())
        .execute(&mut *conn)
        .await?;
    Ok((made.rows_affected() == 1).then(|| NewBlock {
        id,
        client: judged.client_id.clone(),
        prefix: judged.key.clone(),
        reason,
        counts: own,
    }))
}

/// The judge's statements, for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        ("judge.leader", LEADER.to_owned()),
        ("judge.prune_counters", PRUNE_COUNTERS.to_owned()),
        ("judge.prune_windows", PRUNE_WINDOWS.to_owned()),
        ("judge.record_block", RECORD_BLOCK.to_owned()),
        ("judge.clients", JUDGE_CLIENTS.clone()),
        ("judge.prefixes", JUDGE_PREFIXES.clone()),
        ("judge.countries", JUDGE_COUNTRIES.clone()),
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
