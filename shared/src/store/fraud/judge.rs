//! How the guard judges (docs/contract.md §9), in SQL and in one place: the
//! judged counts of every flow's prefixes and calling codes (the API's
//! upkeep, each tick) or of one number's (the dispatcher, before a
//! workflow's later step), the verdicts of `crate::domain::fraud` on them,
//! and the blocks they make. A block is recorded under a transaction-scoped
//! advisory lock of its client and key, so the upkeep and any number of
//! dispatchers judging at once record it, and queue its
//! `fraud_guard_blocked` event, once.

use super::GuardConfig;
use crate::domain::fraud::{self, Counts, GuardMode, Verdict};
use crate::events::FraudGuardBlocked;
use crate::outbox::{self, OutboxMessage};
use crate::ObjectId;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The judged window: 1-second buckets whose every send is older than the grace period.
const JUDGED: &str = "c.bucket >= now() - make_interval(secs => $1)
      AND c.bucket + interval '1 second' <= now() - make_interval(secs => $2)";

/// One number's keys (`$3` client, `$4` flow, `$5` prefix or calling code).
const ONE_CLIENT: &str = "AND c.client_id = $3";
const ONE_PREFIX: &str = "AND c.client_id = $3 AND c.project_flow_id = $4 AND c.prefix = $5";
const ONE_COUNTRY: &str = "AND c.client_id = $3 AND c.project_flow_id = $4 AND c.country_code = $5";

fn clients(only: &str) -> String {
    format!(
        "SELECT c.client_id, sum(c.sent)::bigint, sum(c.validated)::bigint FROM fraud_counters c
          WHERE {JUDGED} {only} GROUP BY c.client_id"
    )
}

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

fn prefixes(only: &str) -> String {
    format!(
        "SELECT c.client_id, c.project_flow_id, c.prefix AS key, sum(c.sent)::bigint AS sent,
                sum(c.validated)::bigint AS validated, {MODE}
           FROM fraud_counters c JOIN project_flows f ON f.id = c.project_flow_id
          WHERE {JUDGED} AND {} AND {} {only}
          GROUP BY c.client_id, c.project_flow_id, c.prefix, f.phone->>'fraudGuard'",
        since_last_block("c.prefix"),
        since_last_block("c.country_code"),
    )
}

fn countries(only: &str) -> String {
    format!(
        "SELECT c.client_id, c.project_flow_id, c.country_code AS key, sum(c.sent)::bigint AS sent,
                sum(c.validated)::bigint AS validated, {MODE}
           FROM fraud_counters c JOIN project_flows f ON f.id = c.project_flow_id
          WHERE {JUDGED} AND {} {only}
            AND NOT EXISTS (SELECT 1 FROM fraud_blocks b WHERE b.client_id = c.client_id AND b.prefix = c.prefix
                               AND b.blocked_at > now() - make_interval(secs => $1))
          GROUP BY c.client_id, c.project_flow_id, c.country_code, f.phone->>'fraudGuard'",
        since_last_block("c.country_code"),
    )
}

static JUDGE_CLIENTS: LazyLock<String> = LazyLock::new(|| clients(""));
static JUDGE_PREFIXES: LazyLock<String> = LazyLock::new(|| prefixes(""));
static JUDGE_COUNTRIES: LazyLock<String> = LazyLock::new(|| countries(""));
static JUDGE_CLIENT: LazyLock<String> = LazyLock::new(|| clients(ONE_CLIENT));
static JUDGE_PREFIX: LazyLock<String> = LazyLock::new(|| prefixes(ONE_PREFIX));
static JUDGE_COUNTRY: LazyLock<String> = LazyLock::new(|| countries(ONE_COUNTRY));

const LOCK_KEY: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1::text || ' ' || $2::text, 0))";
const RECORD_BLOCK: &str =
    "INSERT INTO fraud_blocks (id, client_id, prefix, project_flow_id, reason, sent, validated, until)
         SELECT $1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8)
          WHERE NOT EXISTS (SELECT 1 FROM fraud_blocks
                             WHERE client_id = $2 AND prefix = $3 AND lifted_at IS NULL AND until > now())";

/// A block the judge made, with its `fraud_guard_blocked` event (in the
/// outbox of the caller's transaction: publish it once that commits).
pub struct NewBlock {
    pub id: ObjectId,
    pub client: ObjectId,
    pub prefix: String,
    pub reason: &'static str,
    pub counts: Counts,
    pub event: OutboxMessage,
}

impl NewBlock {
    /// Counts and logs the block, once its transaction has committed.
    pub fn announce(&self) {
        metrics::counter!("fraud_guard_blocked_total", "reason" => self.reason).increment(1);
        tracing::warn!(
            client_id = %self.client, prefix = %self.prefix, reason = self.reason,
            sent = self.counts.sent, validated = self.counts.validated,
            "fraud guard blocked a prefix"
        );
    }
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

/// Judges every flow's prefixes and calling codes (the upkeep, under its
/// leader lock) and records the blocks their verdicts call for.
pub async fn judge_all(conn: &mut PgConnection, config: &GuardConfig) -> Result<Vec<NewBlock>, sqlx::Error> {
    let (window, grace) = (config.window.as_secs_f64(), config.grace.as_secs_f64());
    let clients: Vec<(ObjectId, i64, i64)> = sqlx::query_as(&JUDGE_CLIENTS)
        .bind(window)
        .bind(grace)
        .fetch_all(&mut *conn)
        .await?;
    if clients.is_empty() {
        return Ok(Vec::new());
    }
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
    verdicts(conn, config, clients, prefixes, countries).await
}

/// Judges one number's prefix and calling code in flow `flow` of `client`
/// now, as the upkeep would, and records the blocks their verdicts call for.
pub async fn judge_number(
    conn: &mut PgConnection,
    config: &GuardConfig,
    (client, flow): (&ObjectId, &ObjectId),
    (country_code, national): (&str, &str),
) -> Result<Vec<NewBlock>, sqlx::Error> {
    let (window, grace) = (config.window.as_secs_f64(), config.grace.as_secs_f64());
    let clients: Vec<(ObjectId, i64, i64)> = sqlx::query_as(&JUDGE_CLIENT)
        .bind(window)
        .bind(grace)
        .bind(client)
        .fetch_all(&mut *conn)
        .await?;
    if clients.is_empty() {
        return Ok(Vec::new());
    }
    let mut judged = Vec::with_capacity(2);
    for (statement, key) in [
        (&JUDGE_PREFIX, fraud::prefix_of(country_code, national)),
        (&JUDGE_COUNTRY, country_code.to_owned()),
    ] {
        let rows: Vec<Judged> = sqlx::query_as(statement)
            .bind(window)
            .bind(grace)
            .bind(client)
            .bind(flow)
            .bind(key)
            .fetch_all(&mut *conn)
            .await?;
        judged.push(rows);
    }
    let countries = judged.pop().unwrap_or_default();
    let prefixes = judged.pop().unwrap_or_default();
    verdicts(conn, config, clients, prefixes, countries).await
}

async fn verdicts(
    conn: &mut PgConnection,
    config: &GuardConfig,
    clients: Vec<(ObjectId, i64, i64)>,
    prefixes: Vec<Judged>,
    countries: Vec<Judged>,
) -> Result<Vec<NewBlock>, sqlx::Error> {
    let clients: HashMap<ObjectId, Counts> = clients.into_iter().map(|(c, s, v)| (c, counts(s, v))).collect();
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

/// Records a block and queues its event, unless the key is blocked already
/// (by another flow's verdict in this same tick, or another process).
async fn record(
    conn: &mut PgConnection,
    judged: &Judged,
    reason: &'static str,
    own: Counts,
    config: &GuardConfig,
) -> Result<Option<NewBlock>, sqlx::Error> {
    sqlx::query(LOCK_KEY)
        .bind(&judged.client_id)
        .bind(&judged.key)
        .execute(&mut *conn)
        .await?;
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
    if made.rows_affected() != 1 {
        return Ok(None);
    }
    let event = outbox::enqueue(&mut *conn, &FraudGuardBlocked::new(id.clone())).await?;
    Ok(Some(NewBlock {
        id,
        client: judged.client_id.clone(),
        prefix: judged.key.clone(),
        reason,
        counts: own,
        event,
    }))
}

/// The judge's statements, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        ("judge.lock_key", LOCK_KEY.to_owned()),
        ("judge.record_block", RECORD_BLOCK.to_owned()),
        ("judge.clients", JUDGE_CLIENTS.clone()),
        ("judge.prefixes", JUDGE_PREFIXES.clone()),
        ("judge.countries", JUDGE_COUNTRIES.clone()),
        ("judge.client", JUDGE_CLIENT.clone()),
        ("judge.prefix", JUDGE_PREFIX.clone()),
        ("judge.country", JUDGE_COUNTRY.clone()),
    ]
    .map(|(name, sql)| (name.to_owned(), sql))
    .into()
}
