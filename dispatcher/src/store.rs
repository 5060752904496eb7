//! The dispatcher's database: every read and write of a send. Under a burst
//! the per-message statements (load, claim, record) are group-committed
//! through `shared::batch`; the status changes themselves are the status
//! machine's (`shared::store::phone_validations`). Once sends are recorded,
//! a receipt their provider reported before that is applied
//! (`shared::store::receipts`): one indexed probe per batch. Recording a
//! send that left through a provider queues its `phone_validation_sent`
//! event in the same statement, for clients with a webhook endpoint for it.

mod failover;
mod limits;
mod workflow;

use failover::history_entry;
pub use failover::FailoverClaim;
pub use limits::DayUnit;
pub use workflow::Refused;

use chrono::{DateTime, Utc};
use serde_json::json;
pub use shared::batch::StoreError;

use shared::batch::{Batcher, Duplicates};
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::domain::{FailedReason, PhoneSettings};
use shared::outbox::{OutboxMessage, Relay};
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
                // Committed (one statement): their `phone_validation_sent` events go out.
                relay.publish_soon(recorded.events);
                let messages: Vec<(&str, &str)> = messages
                    .iter()
                    .flatten()
                    .map(|(provider, id)| (provider.as_str(), id.as_str()))
                    .collect();
                apply_early_receipts(&pool, &relay, &messages).await;
                Ok(touched(recorded.ids))
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
        Ok(applied) => relay.publish_soon(applied.into_iter().flat_map(receipts::Applied::messages)),
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
    [("dispatcher.load_many", LOAD_MANY.as_str())]
        .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
        .into_iter()
        .chain(failover::statements())
        .chain(workflow::statements())
        .collect()
}
