//! The dispatcher's database: every read and write of a send. Under a burst
//! the per-message statements (load, claim, record) are group-committed
//! through `shared::batch`; the status changes themselves are the status
//! machine's (`shared::store::phone_validations`). Once sends are recorded,
//! a receipt their provider reported before that is applied
//! (`shared::store::receipts`): one indexed probe per batch.

use chrono::{DateTime, Utc};
use serde_json::json;
pub use shared::batch::StoreError;

use shared::batch::{Batcher, Duplicates};
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::domain::{FailedReason, PhoneSettings};
use shared::events::OtpFailover;
use shared::outbox::{self, OutboxMessage, Relay};
use shared::store::{phone_validations, receipts};
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::PgPool;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static LOAD_MANY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT v.*, f.phone AS settings
           FROM (SELECT {COLUMNS} FROM phone_validations WHERE id = ANY($1)) v
           LEFT JOIN project_flows f ON f.id = v.project_flow_id"
    )
});
const CLAIM_FAILOVER: &str =
    "UPDATE send_failovers SET lease_holder = $3, lease_until = now() + make_interval(secs => $4)
              WHERE validation_id = $1 AND cause = $2 AND sent_at IS NULL
                AND (lease_until IS NULL OR lease_until < now())
          RETURNING failed_provider";
const FAILOVER_LEFT: &str = "SELECT EXTRACT(EPOCH FROM (lease_until - now()))::float8 FROM send_failovers
              WHERE validation_id = $1 AND cause = $2 AND sent_at IS NULL";
const RECORD_FAILOVER: &str =
    "UPDATE send_failovers SET sent_at = now(), provider = $4, message_id = $5, lease_until = NULL
              WHERE validation_id = $1 AND cause = $2 AND lease_holder = $3";
const FAILOVER_CONFIRMATION: &str = "WITH v AS (
                UPDATE phone_validations
                   SET status = CASE WHEN status = 'new' THEN 'sent' ELSE status END,
                       provider_confirmation = (coalesce(provider_confirmation, '{}'::jsonb)
                           - 'deliveredAt' - 'deliveryErrorCode' - 'errorCode' - 'error')
                           || jsonb_build_object('sent', true, 'status', 'ok', 'provider', $2::text,
                                  'messageId', $3::text, 'sentAt', $4::text, 'deliveryStatus', 'queued',
                                  'failover', $5::text, 'channel', $6::text,
                                  'history', coalesce(provider_confirmation->'history', '[]'::jsonb) || $7::jsonb,
                                  'attempts', coalesce((provider_confirmation->>'attempts')::int, 0) + 1),
                       dispatch_lease_until = NULL, dispatch_lease_holder = NULL,
                       updated_at = now()
                 WHERE id = $1
             RETURNING client_id, country_code, phone
             )
             UPDATE phone_send_windows AS w
                SET last_sent_at = now(),
                    sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour') || now()
               FROM v
              WHERE w.client_id = v.client_id AND w.country_code = v.country_code AND w.phone = v.phone";
const REMEMBER_MESSAGE: &str = "INSERT INTO provider_messages (message_id, validation_id, provider) VALUES ($1, $2, $3)
             ON CONFLICT (message_id) DO NOTHING";
const END_FAILOVER: &str = "UPDATE send_failovers
                SET sent_at = CASE WHEN $4 THEN now() END, lease_until = NULL, lease_holder = NULL
              WHERE validation_id = $1 AND cause = $2 AND sent_at IS NULL AND lease_holder = $3";

const ENSURE_STEP: &str = "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, '')
             ON CONFLICT (validation_id, cause) DO NOTHING";
const REFUSE_FIRST_SEND: &str = "UPDATE phone_validations
                    SET status = 'sent',
                        provider_confirmation = coalesce(provider_confirmation, jsonb_build_object(
                                'sent', false, 'status', 'error', 'provider', $3::text, 'channel', $4::text,
                                'errorCode', $5::text, 'error', $6::text, 'attempts', 1))
                            || jsonb_build_object('history',
                                   coalesce(provider_confirmation->'history', '[]'::jsonb) || $7::jsonb),
                        dispatch_lease_until = NULL, dispatch_lease_holder = NULL, updated_at = now()
                  WHERE id = $1 AND status = 'new' AND dispatch_lease_holder = $2";
const CLOSE_STEP: &str = "UPDATE send_failovers SET sent_at = now(), lease_until = NULL
                      WHERE validation_id = $1 AND cause = $2 AND lease_holder = $3 AND sent_at IS NULL";
const REFUSAL_HISTORY: &str = "UPDATE phone_validations
                            SET provider_confirmation = provider_confirmation || jsonb_build_object('history',
                                    coalesce(provider_confirmation->'history', '[]'::jsonb) || $2::jsonb),
                                updated_at = now()
                          WHERE id = $1";
const REQUEST_STEP: &str = "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, $3)
             ON CONFLICT (validation_id, cause) DO NOTHING";

/// A validation with the settings of its flow.
#[derive(Clone)]
pub struct Target {
    pub validation: PhoneValidation,
    /// The flow's phone settings now (absent if the flow is gone).
    pub settings: Option<Arc<PhoneSettings>>,
}

impl Target {
    /// The flow's fixed code when the phone is one of its test numbers.
    pub fn test_code(&self) -> Option<&str> {
        self.settings.as_ref()?.test_code(&self.validation.e164())
    }

    /// The flow allows SMS when WhatsApp cannot reach the number.
    pub fn sms_fallback(&self) -> bool {
        self.settings.as_ref().is_some_and(|s| s.sms_fallback)
    }
}

/// What the provider said, for `providerConfirmation`.
pub struct Confirmation<'a> {
    /// `sms`, `whatsapp` or `voice` (`none` when nothing was sent).
    pub channel: &'a str,
    pub provider: &'a str,
    pub message_id: Option<&'a str>,
    pub attempts: u32,
    pub sent_at: DateTime<Utc>,
    /// An SMS's segments and alphabet.
    pub segments: Option<shared::locale::Segments>,
}

/// What went wrong with the provider, for `providerConfirmation`.
pub struct ProviderFailure<'a> {
    pub provider: &'a str,
    pub code: Option<&'a str>,
    pub message: &'a str,
    pub attempts: u32,
}

pub struct Store {
    pool: PgPool,
    /// This instance, as the holder of the sends it claims.
    holder: String,
    lease: Duration,
    loads: Batcher<ObjectId, (), Target>,
    claims: Batcher<ObjectId, String, ()>,
    records: Batcher<ObjectId, SendRecord, ()>,
    relay: Relay,
}

/// One send to record: its `providerConfirmation`, and the message it
/// produced (provider, message id), if any.
struct SendRecord {
    confirmation: String,
    message: Option<(String, String)>,
}

impl Store {
    /// `lease`: how long a claimed send is ours before another instance may
    /// take it. `relay` publishes the failovers early receipts queue.
    pub fn start(pool: PgPool, lease: Duration, relay: Relay) -> Self {
        let holder = ObjectId::new().to_string();
        let load_pool = pool.clone();
        let loads = Batcher::start(Duplicates::Share, move |ids, _| load_many(load_pool.clone(), ids));
        let (claim_pool, claimer) = (pool.clone(), holder.clone());
        let claims = Batcher::start(Duplicates::FirstWins, move |ids, hashes| {
            let (pool, holder) = (claim_pool.clone(), claimer.clone());
            async move {
                let claimed = phone_validations::claim_sends(&pool, ids, hashes, &holder, lease).await;
                claimed.map(touched)
            }
        });
        let (record_pool, recorder, record_relay) = (pool.clone(), holder.clone(), relay.clone());
        let records = Batcher::start(Duplicates::FirstWins, move |ids, sends: Vec<SendRecord>| {
            let (pool, holder, relay) = (record_pool.clone(), recorder.clone(), record_relay.clone());
            async move {
                let (confirmations, messages): (Vec<String>, Vec<_>) =
                    sends.into_iter().map(|s| (s.confirmation, s.message)).unzip();
                let recorded = phone_validations::record_sends(&pool, ids, confirmations, &holder).await?;
                let messages: Vec<(&str, &str)> = messages
                    .iter()
                    .flatten()
                    .map(|(provider, id)| (provider.as_str(), id.as_str()))
                    .collect();
                apply_early_receipts(&pool, &relay, &messages).await;
                Ok(touched(recorded))
            }
        });
        Self {
            pool,
            holder,
            lease,
            loads,
            claims,
            records,
            relay,
        }
    }

    /// How long a claimed send is ours unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The validation and its flow's settings (`None`: no such validation).
    pub async fn load(&self, id: &ObjectId) -> Result<Option<Target>, StoreError> {
        Ok(self.loads.submit(id.clone(), ()).await?)
    }

    /// Takes the send for the lease and stores the code's hash, if the
    /// validation is still `new` and nobody else holds it. `false` otherwise.
    pub async fn claim(&self, id: &ObjectId, hash: &str) -> Result<bool, StoreError> {
        Ok(self.claims.submit(id.clone(), hash.to_owned()).await?.is_some())
    }

    /// How long another holder's lease still runs (`None`: not held, or not `new` any more).
    pub async fn lease_left(&self, id: &ObjectId) -> Result<Option<Duration>, StoreError> {
        Ok(phone_validations::lease_left(&self.pool, id).await?)
    }

    /// Keeps our send for another lease (before a retry); `false` when it
    /// is no longer ours.
    pub async fn renew(&self, id: &ObjectId) -> Result<bool, StoreError> {
        Ok(phone_validations::renew_lease(&self.pool, id, &self.holder, self.lease).await?)
    }

    /// Gives the send back (before parking the message in a delay queue).
    pub async fn release(&self, id: &ObjectId) -> Result<(), StoreError> {
        Ok(phone_validations::release_send(&self.pool, id, &self.holder).await?)
    }

    /// Records the provider's confirmation and moves the validation to
    /// `sent`, if the send is still ours (`false`: another instance took it over).
    pub async fn mark_sent(&self, id: &ObjectId, sent: &Confirmation<'_>) -> Result<bool, StoreError> {
        let mut confirmation = json!({
            "sent": sent.provider != "none" && sent.provider != "test",
            "status": "ok",
            "provider": sent.provider,
            "attempts": sent.attempts,
            "sentAt": shared::time::format(&sent.sent_at),
        });
        if let Some(message_id) = sent.message_id {
            confirmation["messageId"] = json!(message_id);
            confirmation["deliveryStatus"] = json!("queued");
            confirmation["channel"] = json!(sent.channel);
            confirmation["history"] = json!([history_entry(
                sent.channel,
                sent.provider,
                Some(message_id),
                &sent.sent_at,
                "queued"
            )]);
        }
        if let Some(segments) = sent.segments {
            confirmation["segments"] = json!(segments.count);
            confirmation["encoding"] = json!(segments.encoding.as_str());
        }
        let send = SendRecord {
            confirmation: confirmation.to_string(),
            message: sent.message_id.map(|id| (sent.provider.to_owned(), id.to_owned())),
        };
        Ok(self.records.submit(id.clone(), send).await?.is_some())
    }

    /// Fails the validation (with the provider's error, if any) and queues its
    /// `failed` event in the same transaction.
    pub async fn fail(
        &self,
        id: &ObjectId,
        reason: FailedReason,
        failure: Option<ProviderFailure<'_>>,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        let confirmation = failure.map(|f| {
            json!({
                "sent": false,
                "status": "error",
                "provider": f.provider,
                "errorCode": f.code,
                "error": f.message,
                "attempts": f.attempts,
            })
        });
        let mut tx = self.pool.begin().await?;
        let failed = phone_validations::fail(&mut tx, id, reason, confirmation).await?;
        tx.commit().await?;
        Ok(failed.map(|(_, message)| message))
    }
}

/// Who may send a failover now.
pub enum FailoverClaim {
    /// Ours, for the lease; avoid the provider whose message failed.
    Claimed { failed_provider: String },
    /// Sent (or closed) already: a duplicate message.
    Done,
    /// Another instance holds it for this long still.
    Held(Duration),
}

impl Store {
    /// Claims the failover of `id` for `cause` (see `migrations/0011`).
    pub async fn claim_failover(&self, id: &ObjectId, cause: &str) -> Result<FailoverClaim, StoreError> {
        let claimed: Option<String> = sqlx::query_scalar(CLAIM_FAILOVER)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .bind(self.lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(failed_provider) = claimed {
            return Ok(FailoverClaim::Claimed { failed_provider });
        }
        let held: Option<Option<f64>> = sqlx::query_scalar(FAILOVER_LEFT)
            .bind(id)
            .bind(cause)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match held.flatten() {
            Some(left) => FailoverClaim::Held(Duration::from_secs_f64(left.max(0.0))),
            None => FailoverClaim::Done,
        })
    }

    /// Records the failover's message: it becomes the validation's current
    /// one (`providerConfirmation`), found by the provider's next callback.
    pub async fn record_failover(
        &self,
        id: &ObjectId,
        cause: &str,
        channel: &str,
        provider: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let sent_at = Utc::now();
        let entry = history_entry(channel, provider, Some(message_id), &sent_at, "queued");
        let mut tx = self.pool.begin().await?;
        sqlx::query(RECORD_FAILOVER)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .bind(provider)
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        // The new message becomes the current one, joins the history, and
        // counts in the phone's send ledger (every channel's sends count
        // towards the cooldown and the hourly cap of later creates).
        sqlx::query(FAILOVER_CONFIRMATION)
            .bind(id)
            .bind(provider)
            .bind(message_id)
            .bind(shared::time::format(&sent_at))
            .bind(cause)
            .bind(channel)
            .bind(Json(json!([entry])))
            .execute(&mut *tx)
            .await?;
        sqlx::query(REMEMBER_MESSAGE)
            .bind(message_id)
            .bind(id)
            .bind(provider)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        apply_early_receipts(&self.pool, &self.relay, &[(provider, message_id)]).await;
        Ok(())
    }

    /// Ends a failover without a message (no other provider, a refusal, or
    /// the validation moved on), or gives it back (`close = false`) for a retry.
    pub async fn end_failover(&self, id: &ObjectId, cause: &str, close: bool) -> Result<(), StoreError> {
        sqlx::query(END_FAILOVER)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .bind(close)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A send the provider refused for good, as a `providerConfirmation.history` entry.
pub struct Refused<'a> {
    pub channel: &'a str,
    pub provider: &'a str,
    pub code: Option<&'a str>,
    pub message: &'a str,
}

impl Store {
    /// Makes sure step `cause` of a workflow has its row (a timer's step
    /// gets it when it comes due), so it can be claimed like any failover.
    pub async fn ensure_step(&self, id: &ObjectId, cause: &str) -> Result<(), StoreError> {
        sqlx::query(ENSURE_STEP)
            .bind(id)
            .bind(cause)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A channel refused the code for good: in one transaction, the refusal
    /// joins `providerConfirmation.history`, the send we hold is settled
    /// (the first send, whose validation becomes `sent` so it is never sent
    /// again; or the step `cause`), and the `next` step is requested through
    /// the outbox, so no crash can lose it. Nothing when the send is no
    /// longer ours.
    pub async fn move_on(
        &self,
        id: &ObjectId,
        cause: Option<&str>,
        refused: &Refused<'_>,
        next: &str,
    ) -> Result<(), StoreError> {
        let entry = json!({
            "channel": refused.channel,
            "provider": refused.provider,
            "sentAt": shared::time::format(&Utc::now()),
            "deliveryStatus": "failed",
            "errorCode": refused.code,
            "error": refused.message,
        });
        let mut tx = self.pool.begin().await?;
        let settled = match cause {
            None => sqlx::query(REFUSE_FIRST_SEND)
                .bind(id)
                .bind(&self.holder)
                .bind(refused.provider)
                .bind(refused.channel)
                .bind(refused.code)
                .bind(refused.message)
                .bind(Json(json!([entry])))
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            Some(cause) => {
                let closed = sqlx::query(CLOSE_STEP)
                    .bind(id)
                    .bind(cause)
                    .bind(&self.holder)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if closed == 1 {
                    sqlx::query(REFUSAL_HISTORY)
                        .bind(id)
                        .bind(Json(json!([entry])))
                        .execute(&mut *tx)
                        .await?;
                }
                closed
            }
        };
        if settled == 0 {
            return Ok(());
        }
        let inserted = sqlx::query(REQUEST_STEP)
            .bind(id)
            .bind(next)
            .bind(refused.provider)
            .execute(&mut *tx)
            .await?;
        let message = if inserted.rows_affected() == 1 {
            Some(outbox::enqueue(&mut tx, &OtpFailover::new(id.clone(), next)).await?)
        } else {
            None
        };
        tx.commit().await?;
        self.relay.publish_soon(message);
        Ok(())
    }
}

/// One entry of `providerConfirmation.history`.
fn history_entry(
    channel: &str,
    provider: &str,
    message_id: Option<&str>,
    sent_at: &DateTime<Utc>,
    status: &str,
) -> serde_json::Value {
    json!({
        "channel": channel,
        "provider": provider,
        "messageId": message_id,
        "sentAt": shared::time::format(sent_at),
        "deliveryStatus": status,
    })
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    validation: PhoneValidation,
    settings: Option<Json<PhoneSettings>>,
}

/// The validations `ids` and their flows' settings, in one statement.
async fn load_many(pool: PgPool, ids: Vec<ObjectId>) -> Result<Vec<(ObjectId, Target)>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&LOAD_MANY).bind(ids).fetch_all(&pool).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let target = Target {
                validation: row.validation,
                settings: row.settings.map(|Json(settings)| Arc::new(settings)),
            };
            (target.validation.id.clone(), target)
        })
        .collect())
}

/// Applies the receipts that came for `messages` before they were recorded
/// (just committed) and publishes the failovers they queue. A failure here
/// loses nothing: the receipts stay kept, and the sweep applies them.
async fn apply_early_receipts(pool: &PgPool, relay: &Relay, messages: &[(&str, &str)]) {
    match receipts::apply_waiting(pool, messages).await {
        Ok(applied) => relay.publish_soon(applied.into_iter().filter_map(|a| a.failover)),
        Err(error) => tracing::warn!(%error, "could not apply early receipts now; the sweep will"),
    }
}

/// A conditional update's answer: the ids it updated.
fn touched(ids: Vec<ObjectId>) -> Vec<(ObjectId, ())> {
    ids.into_iter().map(|id| (id, ())).collect()
}

/// Every statement of the dispatcher (those of the status machine it runs
/// are `shared::store`'s), for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        ("dispatcher.load_many", LOAD_MANY.as_str()),
        ("dispatcher.claim_failover", CLAIM_FAILOVER),
        ("dispatcher.failover_left", FAILOVER_LEFT),
        ("dispatcher.record_failover", RECORD_FAILOVER),
        ("dispatcher.failover_confirmation", FAILOVER_CONFIRMATION),
        ("dispatcher.remember_message", REMEMBER_MESSAGE),
        ("dispatcher.end_failover", END_FAILOVER),
        ("dispatcher.ensure_step", ENSURE_STEP),
        ("dispatcher.refuse_first_send", REFUSE_FIRST_SEND),
        ("dispatcher.close_step", CLOSE_STEP),
        ("dispatcher.refusal_history", REFUSAL_HISTORY),
        ("dispatcher.request_step", REQUEST_STEP),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
