//! Every statement that moves a validation along its status machine
//! (`crate::domain::phone_validation`), each conditional on the status it
//! expects; a move to a final status queues its event in the outbox in the
//! same transaction.

use super::lifecycle;
use crate::domain::phone_validation::{PhoneValidation, COLUMNS};
use crate::domain::FailedReason;
use crate::domain::WebhookEventType;
use crate::events::{routing, ValidationEvent, ValidationEventType};
use crate::{outbox, ObjectId};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use std::sync::LazyLock;
use std::time::Duration;

static FETCH: LazyLock<String> = LazyLock::new(|| format!("SELECT {COLUMNS} FROM phone_validations WHERE id = $1"));

static FAIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE phone_validations
            SET status = 'failed', failed_reason = $2,
                provider_confirmation = COALESCE($3, provider_confirmation),
                updated_at = now()
          WHERE id = $1 AND status IN ('new', 'sent')
      RETURNING {COLUMNS}"
    )
});

static VALIDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE phone_validations
            SET status = 'validated', validated_at = now(), attempts = attempts - 1, updated_at = now()
          WHERE id = $1 AND status IN ('new', 'sent') AND otp_hash IS NOT NULL
      RETURNING {COLUMNS}"
    )
});

static SUPERSEDE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE phone_validations AS v
            SET status = 'failed', failed_reason = 'superseded', updated_at = now()
           FROM unnest($2::text[], $3::text[]) AS p(country_code, phone)
          WHERE v.client_id = $1 AND v.country_code = p.country_code AND v.phone = p.phone
            AND v.status IN ('new', 'sent') AND v.id <> ALL($4)
      RETURNING {}",
        prefixed("v")
    )
});

/// The expiry sweep's batch: open validations past `expiresAt`, oldest
/// first, on the partial index `phone_validations_open_expiry_idx`; rows
/// another sweeper (or a validate call) holds are skipped, not waited for.
/// A send a dispatcher holds a lease on is left to it: it is at the
/// provider, and gives up as `provider_unavailable` when no provider took
/// the code in time (a dead holder's lease runs out within
/// `DISPATCH_LEASE_SECONDS`, and the sweep takes the row then).
static EXPIRE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE phone_validations AS v
            SET status = 'failed', failed_reason = 'expired', updated_at = now()
           FROM (SELECT id FROM phone_validations
                  WHERE status IN ('new', 'sent') AND expires_at <= now()
                    AND (dispatch_lease_until IS NULL OR dispatch_lease_until < now())
                  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS due
          WHERE v.id = due.id AND v.status IN ('new', 'sent')
      RETURNING {}",
        prefixed("v")
    )
});

/// `COLUMNS`, each prefixed with `alias.`.
fn prefixed(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const COUNT_ATTEMPT: &str = "UPDATE phone_validations SET attempts = attempts + 1, updated_at = now()
          WHERE id = $1 AND status IN ('new', 'sent') AND otp_hash IS NOT NULL
            AND attempts < max_attempts AND expires_at > now()
      RETURNING attempts, max_attempts, otp_hash";
const CLAIM_SENDS: &str = "UPDATE phone_validations AS v
            SET otp_hash = c.hash, dispatch_lease_holder = $3,
                dispatch_lease_until = now() + make_interval(secs => $4), updated_at = now()
           FROM unnest($1::text[], $2::text[]) AS c(id, hash)
          WHERE v.id = c.id AND v.status = 'new'
            AND (v.dispatch_lease_until IS NULL OR v.dispatch_lease_until < now())
      RETURNING v.id";
/// Records a batch of sends; a send that left through a provider
/// (`providerConfirmation.sent`) writes its `phone_validation_sent` event in
/// the same statement when the client has an endpoint subscribed to it
/// (`super::lifecycle`). `$4`: the event ids, `$5`: their `occurredAt`.
static RECORD_SENDS: LazyLock<String> = LazyLock::new(|| {
    let sent = format!("'{}'", WebhookEventType::Sent.as_str());
    format!(
        "WITH recorded AS (
            UPDATE phone_validations AS v
               SET status = CASE WHEN v.status = 'new' THEN 'sent' ELSE v.status END,
                   provider_confirmation = c.confirmation::jsonb,
                   dispatch_lease_until = NULL, dispatch_lease_holder = NULL, updated_at = now()
              FROM unnest($1::text[], $2::text[], $4::text[]) AS c(id, confirmation, event_id)
             WHERE v.id = c.id AND v.dispatch_lease_holder = $3
         RETURNING v.id, v.client_id, v.project_id, c.confirmation::jsonb AS confirmation, c.event_id
         ), messages AS (
            INSERT INTO provider_messages (message_id, validation_id, provider)
            SELECT confirmation->>'messageId', id, confirmation->>'provider'
              FROM recorded WHERE confirmation ? 'messageId'
            ON CONFLICT (message_id) DO NOTHING
         ), events AS (
            INSERT INTO outbox (routing_key, message_id, payload)
            SELECT '{routing_key}', r.event_id, {payload}
              FROM recorded AS r
             WHERE r.confirmation->'sent' = 'true'::jsonb AND {subscribed}
         RETURNING id, message_id, payload::text AS payload
         )
         SELECT r.id, e.id AS outbox_id, e.message_id, e.payload
           FROM recorded AS r LEFT JOIN events AS e ON e.message_id = r.event_id",
        routing_key = routing::SENT,
        payload = lifecycle::payload("r.event_id", &sent, "$5::text", "r.id"),
        subscribed = lifecycle::subscribed("r", &sent),
    )
});
const RENEW_LEASE: &str = "UPDATE phone_validations SET dispatch_lease_until = now() + make_interval(secs => $3)
          WHERE id = $1 AND dispatch_lease_holder = $2 AND status = 'new'";
const RELEASE_SEND: &str = "UPDATE phone_validations SET dispatch_lease_until = NULL, dispatch_lease_holder = NULL
          WHERE id = $1 AND dispatch_lease_holder = $2 AND status = 'new'";
const LEASE_LEFT: &str = "SELECT EXTRACT(EPOCH FROM (dispatch_lease_until - now()))::float8 FROM phone_validations
          WHERE id = $1 AND status = 'new' AND dispatch_lease_until > now()";

/// Loads one validation by id, whoever owns it (workers, not the API).
pub async fn fetch(conn: impl PgExecutor<'_>, id: &ObjectId) -> Result<Option<PhoneValidation>, sqlx::Error> {
    sqlx::query_as(&FETCH).bind(id).fetch_optional(conn).await
}

/// Moves a `new` or `sent` validation to `failed` and queues its `failed` event
/// in the same transaction. `None` when it had already reached a final status
/// (someone else decided first; nothing is emitted twice).
pub async fn fail(
    tx: &mut PgConnection,
    id: &ObjectId,
    reason: FailedReason,
    provider_confirmation: Option<serde_json::Value>,
) -> Result<Option<(PhoneValidation, outbox::OutboxMessage)>, sqlx::Error> {
    let failed: Option<PhoneValidation> = sqlx::query_as(&FAIL)
        .bind(id)
        .bind(reason)
        .bind(provider_confirmation.map(Json))
        .fetch_optional(&mut *tx)
        .await?;
    emit(tx, failed, ValidationEventType::Failed).await
}

/// Queues the event of a validation that just reached a final status.
async fn emit(
    tx: &mut PgConnection,
    validation: Option<PhoneValidation>,
    kind: ValidationEventType,
) -> Result<Option<(PhoneValidation, outbox::OutboxMessage)>, sqlx::Error> {
    let Some(validation) = validation else {
        return Ok(None);
    };
    let message = outbox::enqueue(tx, &ValidationEvent::new(kind, validation.clone())).await?;
    Ok(Some((validation, message)))
}

/// An attempt counted against a validation, with what to check it against.
#[derive(Debug, sqlx::FromRow)]
pub struct CountedAttempt {
    pub attempts: i32,
    pub max_attempts: i32,
    pub otp_hash: Option<String>,
}

/// Counts one attempt at a code, before the code is compared, so N
/// concurrent guesses consume N attempts and no lock is held while hashing.
/// Once a hash is stored the code may be compared, whether or not the
/// dispatcher has recorded the send yet: the message may be on the phone first.
/// `None` when no attempt may be made (someone moved it on, it expired, or
/// the attempts are used up).
pub async fn count_attempt(conn: impl PgExecutor<'_>, id: &ObjectId) -> Result<Option<CountedAttempt>, sqlx::Error> {
    sqlx::query_as(COUNT_ATTEMPT).bind(id).fetch_optional(conn).await
}

/// The right code: `validated` (the attempt is given back: `attempts` counts
/// wrong codes) and its event queued in the same transaction. `None` when it
/// moved on meanwhile.
pub async fn validate(
    tx: &mut PgConnection,
    id: &ObjectId,
) -> Result<Option<(PhoneValidation, outbox::OutboxMessage)>, sqlx::Error> {
    let validated: Option<PhoneValidation> = sqlx::query_as(&VALIDATE).bind(id).fetch_optional(&mut *tx).await?;
    emit(tx, validated, ValidationEventType::Validated).await
}

/// Takes the sends of `ids` for `holder` until `lease` runs out and stores
/// their codes' hashes, for those still `new` and held by nobody (or by a
/// holder whose lease ran out). Returns the ids taken.
pub async fn claim_sends(
    conn: impl PgExecutor<'_>,
    ids: Vec<ObjectId>,
    hashes: Vec<String>,
    holder: &str,
    lease: Duration,
) -> Result<Vec<ObjectId>, sqlx::Error> {
    sqlx::query_scalar(CLAIM_SENDS)
        .bind(ids)
        .bind(hashes)
        .bind(holder)
        .bind(lease.as_secs_f64())
        .fetch_all(conn)
        .await
}

/// What [`record_sends`] recorded: the ids, and the `phone_validation_sent`
/// events it queued (in the outbox: publish them soon).
#[derive(Debug, Default)]
pub struct RecordedSends {
    pub ids: Vec<ObjectId>,
    pub events: Vec<outbox::OutboxMessage>,
}

/// A recorded send and its event's outbox row (id, event id, body), if written.
type RecordedRow = (ObjectId, Option<i64>, Option<String>, Option<String>);

/// Records the providers' confirmations (JSON text) of sends `holder` holds:
/// `new` becomes `sent` (a validation the user already validated, or one
/// that failed meanwhile, keeps its status and gains the confirmation), and
/// each message id is kept for the provider's status callbacks. A send that
/// left through a provider queues its `phone_validation_sent` event in the
/// same statement, if the client has an endpoint for it. Returns the ids
/// recorded; a send taken over by another holder is not.
pub async fn record_sends(
    conn: impl PgExecutor<'_>,
    ids: Vec<ObjectId>,
    confirmations: Vec<String>,
    holder: &str,
) -> Result<RecordedSends, sqlx::Error> {
    let occurred_at = lifecycle::occurred_now();
    let event_ids: Vec<ObjectId> = ids.iter().map(|_| ObjectId::new()).collect();
    let rows: Vec<RecordedRow> = sqlx::query_as(&RECORD_SENDS)
        .bind(ids)
        .bind(confirmations)
        .bind(holder)
        .bind(event_ids)
        .bind(occurred_at)
        .fetch_all(conn)
        .await?;
    let mut recorded = RecordedSends::default();
    for (id, outbox_id, message_id, payload) in rows {
        recorded.ids.push(id);
        if let (Some(outbox_id), Some(message_id), Some(payload)) = (outbox_id, message_id, payload) {
            let message = lifecycle::message(outbox_id, routing::SENT.to_owned(), message_id, payload);
            recorded.events.push(message);
        }
    }
    Ok(recorded)
}

/// Keeps a send `holder` holds for another `lease` (before a retry).
pub async fn renew_lease(
    conn: impl PgExecutor<'_>,
    id: &ObjectId,
    holder: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(RENEW_LEASE)
        .bind(id)
        .bind(holder)
        .bind(lease.as_secs_f64())
        .execute(conn)
        .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Gives a send `holder` holds back (before its message waits in a delay queue).
pub async fn release_send(conn: impl PgExecutor<'_>, id: &ObjectId, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query(RELEASE_SEND).bind(id).bind(holder).execute(conn).await?;
    Ok(())
}

/// How long another holder's lease on the send still runs (`None`: not
/// held, or not `new` any more).
pub async fn lease_left(conn: impl PgExecutor<'_>, id: &ObjectId) -> Result<Option<Duration>, sqlx::Error> {
    let left: Option<f64> = sqlx::query_scalar(LEASE_LEFT)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .flatten();
    Ok(left.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// A new code for these phones (client, country code, national number)
/// supersedes their older open validations (all but `keep`): they fail as
/// `superseded` and their events are queued in the same transaction.
pub async fn supersede(
    tx: &mut PgConnection,
    client: &ObjectId,
    phones: &[(String, String)],
    keep: &[ObjectId],
) -> Result<Vec<outbox::OutboxMessage>, sqlx::Error> {
    let (countries, numbers): (Vec<&str>, Vec<&str>) = phones.iter().map(|(c, n)| (c.as_str(), n.as_str())).unzip();
    let superseded: Vec<PhoneValidation> = sqlx::query_as(&SUPERSEDE)
        .bind(client)
        .bind(countries)
        .bind(numbers)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
    let mut messages = Vec::with_capacity(superseded.len());
    for validation in superseded {
        if let Some((_, message)) = emit(tx, Some(validation), ValidationEventType::Failed).await? {
            messages.push(message);
        }
    }
    Ok(messages)
}

/// Fails up to `limit` open validations past `expiresAt` (`expired`) and
/// queues their `failed` events with one multi-row insert, in the caller's
/// transaction (commit, then publish the events). A validation a validate
/// call or the dispatcher fails meanwhile is not taken: each emits once.
pub async fn expire(tx: &mut PgConnection, limit: i64) -> Result<Vec<outbox::OutboxMessage>, sqlx::Error> {
    let expired: Vec<PhoneValidation> = sqlx::query_as(&EXPIRE).bind(limit).fetch_all(&mut *tx).await?;
    let events = expired
        .into_iter()
        .map(|validation| outbox::Prepared::new(&ValidationEvent::new(ValidationEventType::Failed, validation)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    outbox::enqueue_many(tx, events).await
}

/// Every statement of the status machine, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        ("phone_validations.fetch", FETCH.as_str()),
        ("phone_validations.fail", FAIL.as_str()),
        ("phone_validations.count_attempt", COUNT_ATTEMPT),
        ("phone_validations.validate", VALIDATE.as_str()),
        ("phone_validations.claim_sends", CLAIM_SENDS),
        ("phone_validations.record_sends", RECORD_SENDS.as_str()),
        ("phone_validations.renew_lease", RENEW_LEASE),
        ("phone_validations.release_send", RELEASE_SEND),
        ("phone_validations.lease_left", LEASE_LEFT),
        ("phone_validations.supersede", SUPERSEDE.as_str()),
        ("phone_validations.expire", EXPIRE.as_str()),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
