//! Recording what a provider reported (docs/contract.md §11), in short
//! transactions: the status lands in `providerConfirmation` (never moving
//! back), and a failure that another provider or channel may get past
//! queues one failover, through the outbox, while the code is still valid.
//! A report that makes the message delivered or undelivered writes its
//! lifecycle event in the same statement, for clients with an endpoint for it.
//!
//! A report only changes messages its own provider sent (`provider_messages`
//! is matched on message id *and* provider). A report about a message whose
//! send is not recorded yet (the dispatcher records sends in batches, after
//! the provider answered, and a fast provider may report first) is kept in
//! `early_receipts` and applied once the send is recorded. Each side writes
//! and commits first, then looks for the other: the API keeps the receipt,
//! then looks for the send; the dispatcher records the send, then probes for
//! a kept receipt. Whichever order the commits come in, at least one of them
//! sees both, and taking the kept row (a `DELETE`) applies it exactly once.
//! If a process dies between its commit and its look, the periodic
//! [`sweep`] applies what is left.

use super::lifecycle;
use crate::domain::delivery::{failover_cause, DeliveryStatus, Report, ReportingProvider};
use crate::domain::{workflow, Gateway, PhoneSettings, ValidationStatus, WebhookEventType};
use crate::events::OtpFailover;
use crate::outbox::{self, OutboxMessage};
use crate::ObjectId;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::sync::LazyLock;
use std::time::Duration;

const WAITING: &str = "SELECT e.provider, e.message_id FROM unnest($1::text[], $2::text[]) AS s(provider, message_id)
           JOIN early_receipts AS e ON e.provider = s.provider AND e.message_id = s.message_id";
const RECORDED: &str = "SELECT e.provider, e.message_id FROM early_receipts AS e
          WHERE EXISTS (SELECT 1 FROM provider_messages AS m
                         WHERE m.message_id = e.message_id AND m.provider = e.provider)
          ORDER BY e.received_at LIMIT $1";
const PURGE: &str = "DELETE FROM early_receipts WHERE (provider, message_id) IN (
             SELECT provider, message_id FROM early_receipts
              WHERE received_at < now() - make_interval(secs => $1)
              ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
const KEEP: &str = "WITH known AS (
            SELECT 1 FROM provider_messages WHERE message_id = $2 AND provider = $1
         ), kept AS (
            INSERT INTO early_receipts (provider, message_id, status, rank, error_code)
            SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM known)
            ON CONFLICT (provider, message_id) DO UPDATE
               SET status = EXCLUDED.status, rank = EXCLUDED.rank, error_code = EXCLUDED.error_code
             WHERE early_receipts.rank < EXCLUDED.rank
         )
         SELECT NOT EXISTS (SELECT 1 FROM known)";
const TAKE_KEPT: &str = "DELETE FROM early_receipts AS e WHERE e.provider = $1 AND e.message_id = $2
            AND EXISTS (SELECT 1 FROM provider_messages AS m
                         WHERE m.message_id = e.message_id AND m.provider = e.provider)
         RETURNING e.status, e.error_code";
/// Applies a report to its message, if it goes further; a report that makes
/// the message delivered (or read before any `delivered`) or undelivered
/// writes its lifecycle event in the same statement when the client has an
/// endpoint subscribed to it (`super::lifecycle`). `$7`: the event id,
/// `$8`: its `occurredAt`.
static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH changed AS (
        UPDATE phone_validations AS v
            SET provider_confirmation = v.provider_confirmation
                    || jsonb_build_object('deliveryStatus', $2::text)
                    || CASE WHEN $3::text IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('deliveredAt', $3::text) END
                    || CASE WHEN $4::text IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('deliveryErrorCode', $4::text) END
                    -- The message's entry in `history` gets its status too.
                    || CASE WHEN jsonb_typeof(v.provider_confirmation->'history') = 'array'
                            THEN jsonb_build_object('history', coalesce((
                                SELECT jsonb_agg(CASE WHEN h->>'messageId' = $1
                                                      THEN h || jsonb_build_object('deliveryStatus', $2::text)
                                                      ELSE h END ORDER BY n)
                                  FROM jsonb_array_elements(v.provider_confirmation->'history') WITH ORDINALITY AS e(h, n)),
                                '[]'::jsonb))
                            ELSE '{{}}'::jsonb END,
                updated_at = now()
           FROM provider_messages AS m
          WHERE m.message_id = $1 AND m.provider = $6 AND v.id = m.validation_id
            AND v.provider_confirmation->>'messageId' = $1
            AND (CASE coalesce(v.provider_confirmation->>'deliveryStatus', 'queued')
                   WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'undelivered' THEN 2 WHEN 'failed' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 0 END) < $5
      RETURNING v.id, v.client_id, v.project_id, v.status, v.phone_gateway, v.expires_at,
                v.provider_confirmation->>'channel' AS channel,
                (SELECT f.phone FROM project_flows AS f WHERE f.id = v.project_flow_id) AS settings,
                CASE WHEN $2 = 'delivered' OR ($2 = 'read' AND NOT v.provider_confirmation ? 'deliveredAt')
                          THEN '{delivered}'
                     WHEN $2 IN ('undelivered', 'failed') THEN '{undelivered}' END AS event_type
         ), event AS (
            INSERT INTO outbox (routing_key, message_id, payload)
            SELECT {routing_key}, $7::text, {payload}
              FROM changed AS c
             WHERE c.event_type IS NOT NULL AND {subscribed}
         RETURNING id, routing_key, message_id, payload::text AS payload
         )
         SELECT c.id, c.status, c.phone_gateway, c.expires_at, c.channel, c.settings,
                ev.id AS event_id, ev.routing_key AS event_routing_key, ev.message_id AS event_message_id,
                ev.payload AS event_payload
           FROM changed AS c LEFT JOIN event AS ev ON true",
        delivered = WebhookEventType::Delivered.as_str(),
        undelivered = WebhookEventType::Undelivered.as_str(),
        routing_key = lifecycle::routing_key("c.event_type"),
        payload = lifecycle::payload("$7::text", "c.event_type", "$8::text", "c.id"),
        subscribed = lifecycle::subscribed("c", "c.event_type"),
    )
});
const REQUEST_FAILOVER: &str = "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, $3)
         ON CONFLICT (validation_id, cause) DO NOTHING";

/// How long a receipt waits for its send to be recorded. A send is recorded
/// within moments of the provider's answer; a receipt still waiting after
/// this names a message that was never recorded (or was never ours).
pub const EARLY_RECEIPT_TTL: Duration = Duration::from_secs(600);
/// The most kept receipts one sweep applies, and purges.
const SWEEP_APPLY: i64 = 100;
const SWEEP_PURGE: i64 = 500;

/// A report that moved its validation forward.
#[derive(Debug)]
pub struct Applied {
    pub validation_id: ObjectId,
    /// The failover it queued, already in the outbox (publish it soon).
    pub failover: Option<OutboxMessage>,
    /// Its `phone_validation_delivered` or `_undelivered` event, in the
    /// outbox when the client has an endpoint for it (publish it soon).
    pub event: Option<OutboxMessage>,
}

impl Applied {
    /// What it queued in the outbox, for the relay.
    pub fn messages(self) -> impl Iterator<Item = OutboxMessage> {
        self.event.into_iter().chain(self.failover)
    }
}

/// What recording a report did.
#[derive(Debug)]
pub enum Recorded {
    Applied(Applied),
    /// Its message's send is not recorded (yet): kept until it is.
    Kept,
    /// Nothing: not further than what is recorded, or not the current message.
    Unchanged,
}

/// Records `report`: applies it now if its send is recorded, keeps it
/// otherwise (and applies it if the send was recorded meanwhile).
pub async fn record(pool: &PgPool, report: &Report) -> Result<Recorded, sqlx::Error> {
    if let Some(applied) = apply_now(pool, report).await? {
        return Ok(Recorded::Applied(applied));
    }
    if !keep(pool, report).await? {
        // Recorded, maybe just after the first look: once more, now that it is.
        let applied = apply_now(pool, report).await?;
        return Ok(applied.map_or(Recorded::Unchanged, Recorded::Applied));
    }
    // Kept and committed: a dispatcher that recorded the send before our
    // commit may have probed too early, so look again.
    Ok(match apply_kept(pool, report.provider, &report.message_id).await? {
        Some(applied) => Recorded::Applied(applied),
        None => Recorded::Kept,
    })
}

async fn apply_now(pool: &PgPool, report: &Report) -> Result<Option<Applied>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let applied = apply(&mut tx, report).await?;
    tx.commit().await?;
    Ok(applied)
}

/// After recording sends: applies the receipts kept for any of `messages`
/// (provider, message id), with one indexed probe for all of them.
pub async fn apply_waiting(pool: &PgPool, messages: &[(&str, &str)]) -> Result<Vec<Applied>, sqlx::Error> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let (providers, ids): (Vec<&str>, Vec<&str>) = messages.iter().copied().unzip();
    let waiting: Vec<(String, String)> = sqlx::query_as(WAITING)
        .bind(providers)
        .bind(ids)
        .fetch_all(pool)
        .await?;
    apply_each(pool, waiting).await
}

/// The upkeep, on any instance: applies up to a batch of kept receipts whose
/// send is recorded (a process died between its commit and its look) and
/// purges up to a batch of those older than `ttl`. Returns what it applied
/// and how many it purged.
pub async fn sweep(pool: &PgPool, ttl: Duration) -> Result<(Vec<Applied>, u64), sqlx::Error> {
    let recorded: Vec<(String, String)> = sqlx::query_as(RECORDED).bind(SWEEP_APPLY).fetch_all(pool).await?;
    let applied = apply_each(pool, recorded).await?;
    let purged = sqlx::query(PURGE)
        .bind(ttl.as_secs_f64())
        .bind(SWEEP_PURGE)
        .execute(pool)
        .await?;
    Ok((applied, purged.rows_affected()))
}

async fn apply_each(pool: &PgPool, kept: Vec<(String, String)>) -> Result<Vec<Applied>, sqlx::Error> {
    let mut applied = Vec::new();
    for (provider, message_id) in kept {
        let Some(provider) = ReportingProvider::parse(&provider) else {
            continue;
        };
        applied.extend(apply_kept(pool, provider, &message_id).await?);
    }
    Ok(applied)
}

/// Keeps `report` if its message is not recorded: `false` when it is (the
/// report changed nothing because it goes nowhere further). A kept report
/// is replaced only by one that goes further.
async fn keep(pool: &PgPool, report: &Report) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(KEEP)
        .bind(report.provider.as_str())
        .bind(&report.message_id)
        .bind(report.status.as_str())
        .bind(i16::from(report.status.rank()))
        .bind(report.error_code.as_deref())
        .fetch_one(pool)
        .await
}

/// Takes the receipt kept for this message, if its send is recorded now,
/// and applies it in the same transaction. Concurrent takers wait on the
/// row; only the first finds it.
async fn apply_kept(
    pool: &PgPool,
    provider: ReportingProvider,
    message_id: &str,
) -> Result<Option<Applied>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let kept: Option<(String, Option<String>)> = sqlx::query_as(TAKE_KEPT)
        .bind(provider.as_str())
        .bind(message_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((status, error_code)) = kept else {
        return Ok(None);
    };
    // Only `record` writes the row, with a status it parsed.
    let applied = match DeliveryStatus::parse(&status) {
        Some(status) => {
            let report = Report {
                provider,
                message_id: message_id.to_owned(),
                status,
                error_code,
            };
            apply(&mut tx, &report).await?
        }
        None => None,
    };
    tx.commit().await?;
    if applied.is_some() {
        tracing::info!(
            provider = provider.as_str(),
            "a receipt that came before its send was applied"
        );
    }
    Ok(applied)
}

/// The validation a report changed.
#[derive(sqlx::FromRow)]
struct Changed {
    id: ObjectId,
    status: ValidationStatus,
    phone_gateway: Gateway,
    expires_at: DateTime<Utc>,
    /// The channel of the message reported on (absent before workflows).
    channel: Option<String>,
    settings: Option<Json<PhoneSettings>>,
    /// The lifecycle event's outbox row, when one was written.
    event_id: Option<i64>,
    event_routing_key: Option<String>,
    event_message_id: Option<String>,
    event_payload: Option<String>,
}

impl Changed {
    fn event(&mut self) -> Option<OutboxMessage> {
        let id = self.event_id?;
        Some(lifecycle::message(
            id,
            self.event_routing_key.take()?,
            self.event_message_id.take()?,
            self.event_payload.take()?,
        ))
    }
}

/// Applies `report` to the validation whose current message it names, if
/// that message is its provider's and the report goes further.
async fn apply(tx: &mut PgConnection, report: &Report) -> Result<Option<Applied>, sqlx::Error> {
    let Some(mut changed) = update(tx, report).await? else {
        return Ok(None);
    };
    let event = changed.event();
    let failover = request_failover(tx, &changed, report).await?;
    Ok(Some(Applied {
        validation_id: changed.id,
        failover,
        event,
    }))
}

async fn update(tx: &mut PgConnection, report: &Report) -> Result<Option<Changed>, sqlx::Error> {
    let delivered_at = (report.status == DeliveryStatus::Delivered).then(|| crate::time::format(&Utc::now()));
    sqlx::query_as(&UPDATE)
        .bind(&report.message_id)
        .bind(report.status.as_str())
        .bind(delivered_at)
        .bind(report.error_code.as_deref())
        .bind(i16::from(report.status.rank()))
        .bind(report.provider.as_str())
        .bind(ObjectId::new())
        .bind(lifecycle::occurred_now())
        .fetch_optional(tx)
        .await
}

/// Queues the failover a failure calls for, once per validation and cause,
/// and only while the code can still be used.
async fn request_failover(
    tx: &mut PgConnection,
    changed: &Changed,
    report: &Report,
) -> Result<Option<OutboxMessage>, sqlx::Error> {
    let settings = changed.settings.as_ref().map(|s| &s.0);
    let sms_fallback = settings.is_some_and(|s| s.sms_fallback);
    // A workflow moves on to its next channel; without one, the failovers
    // of one channel (the next SMS provider, SMS instead of WhatsApp).
    let channels = workflow::channels(settings, changed.phone_gateway);
    let next = workflow::next(&channels, workflow::position(&channels, changed.channel.as_deref()));
    let step;
    let cause = match next {
        Some((index, _)) if report.status.is_failure() => {
            step = workflow::step_cause(index);
            step.as_str()
        }
        _ => match failover_cause(report, changed.phone_gateway, sms_fallback) {
            Some(cause) => cause,
            None => return Ok(None),
        },
    };
    let open = matches!(changed.status, ValidationStatus::New | ValidationStatus::Sent);
    if !open || changed.expires_at <= Utc::now() {
        return Ok(None);
    }
    let inserted = sqlx::query(REQUEST_FAILOVER)
        .bind(&changed.id)
        .bind(cause)
        .bind(report.provider.as_str())
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    tracing::info!(validation_id = %changed.id, cause, "failover queued");
    Ok(Some(
        outbox::enqueue(tx, &OtpFailover::new(changed.id.clone(), cause)).await?,
    ))
}

/// Every statement of the receipts, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        ("receipts.waiting", WAITING),
        ("receipts.recorded", RECORDED),
        ("receipts.purge", PURGE),
        ("receipts.keep", KEEP),
        ("receipts.take_kept", TAKE_KEPT),
        ("receipts.update", UPDATE.as_str()),
        ("receipts.request_failover", REQUEST_FAILOVER),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
