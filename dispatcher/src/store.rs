//! The dispatcher's database: every read and write of a send. Under a burst
//! the per-message statements (load, claim, record) are group-committed
//! through `shared::batch`; the status changes themselves are the status
//! machine's (`shared::domain::phone_validation`).

use chrono::{DateTime, Utc};
use serde_json::json;
use shared::batch::{BatchError, Batcher, Duplicates};
use shared::domain::phone_validation::{self, PhoneValidation, COLUMNS};
use shared::domain::{FailedReason, PhoneSettings};
use shared::outbox::OutboxMessage;
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// What the provider said, for `providerConfirmation`.
pub struct Confirmation<'a> {
    pub provider: &'a str,
    pub message_id: Option<&'a str>,
    pub attempts: u32,
    pub sent_at: DateTime<Utc>,
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
    records: Batcher<ObjectId, String, ()>,
}

impl Store {
    /// `lease`: how long a claimed send is ours before another instance may take it.
    pub fn start(pool: PgPool, lease: Duration) -> Self {
        let holder = ObjectId::new().to_string();
        let load_pool = pool.clone();
        let loads = Batcher::start(Duplicates::Share, move |ids, _| load_many(load_pool.clone(), ids));
        let (claim_pool, claimer) = (pool.clone(), holder.clone());
        let claims = Batcher::start(Duplicates::FirstWins, move |ids, hashes| {
            let (pool, holder) = (claim_pool.clone(), claimer.clone());
            async move {
                let claimed = phone_validation::claim_sends(&pool, ids, hashes, &holder, lease).await;
                claimed.map(touched)
            }
        });
        let (record_pool, recorder) = (pool.clone(), holder.clone());
        let records = Batcher::start(Duplicates::FirstWins, move |ids, confirmations| {
            let (pool, holder) = (record_pool.clone(), recorder.clone());
            async move {
                let recorded = phone_validation::record_sends(&pool, ids, confirmations, &holder).await;
                recorded.map(touched)
            }
        });
        Self {
            pool,
            holder,
            lease,
            loads,
            claims,
            records,
        }
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
        Ok(phone_validation::lease_left(&self.pool, id).await?)
    }

    /// Keeps our send for another lease (before a retry); `false` when it
    /// is no longer ours.
    pub async fn renew(&self, id: &ObjectId) -> Result<bool, StoreError> {
        Ok(phone_validation::renew_lease(&self.pool, id, &self.holder, self.lease).await?)
    }

    /// Gives the send back (before parking the message in a delay queue).
    pub async fn release(&self, id: &ObjectId) -> Result<(), StoreError> {
        Ok(phone_validation::release_send(&self.pool, id, &self.holder).await?)
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
        }
        Ok(self
            .records
            .submit(id.clone(), confirmation.to_string())
            .await?
            .is_some())
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
        let failed = phone_validation::fail(&mut tx, id, reason, confirmation).await?;
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
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT v.*, f.phone AS settings
           FROM (SELECT {COLUMNS} FROM phone_validations WHERE id = ANY($1)) v
           LEFT JOIN project_flows f ON f.id = v.project_flow_id"
    ))
    .bind(ids)
    .fetch_all(&pool)
    .await?;
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

/// A conditional update's answer: the ids it updated.
fn touched(ids: Vec<ObjectId>) -> Vec<(ObjectId, ())> {
    ids.into_iter().map(|id| (id, ())).collect()
}
