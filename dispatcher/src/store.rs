//! The dispatcher's reads and conditional writes. Every write names the
//! status it expects, so duplicates and races cannot move a validation back.

use crate::batch::{BatchError, Batches};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::domain::FailedReason;
use shared::outbox::OutboxMessage;
use shared::validation::{self, PhoneValidation, COLUMNS};
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::PgPool;
use std::time::Duration;

/// A validation with what its flow says about sending it.
#[derive(Clone)]
pub struct Target {
    pub validation: PhoneValidation,
    /// The flow's fixed code when the phone is one of its test numbers.
    pub test_code: Option<String>,
    /// The flow allows SMS when WhatsApp cannot reach the number.
    pub sms_fallback: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    validation: PhoneValidation,
    test_numbers: Option<Json<std::collections::BTreeMap<String, String>>>,
    sms_fallback: Option<bool>,
}

/// The validation and its flow's sending settings (batched with other
/// messages' loads; `None`: no such validation).
pub async fn load(batches: &Batches, id: &ObjectId) -> Result<Option<Target>, BatchError> {
    batches.loads.submit(id.to_string(), ()).await
}

/// The validations `ids` and their flows' sending settings, in one statement.
pub async fn load_many(pool: PgPool, ids: Vec<String>) -> Result<Vec<(String, Target)>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT v.*, f.phone->'testNumbers' AS test_numbers, (f.phone->>'smsFallback')::boolean AS sms_fallback
           FROM (SELECT {COLUMNS} FROM phone_validations WHERE id = ANY($1)) v
           LEFT JOIN project_flows f ON f.id = v.project_flow_id"
    ))
    .bind(ids)
    .fetch_all(&pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let e164 = format!("{}{}", row.validation.country_code, row.validation.phone);
            let test_code = row.test_numbers.and_then(|Json(numbers)| numbers.get(&e164).cloned());
            let target = Target {
                validation: row.validation,
                test_code,
                sms_fallback: row.sms_fallback.unwrap_or(false),
            };
            (target.validation.id.to_string(), target)
        })
        .collect())
}

/// Takes the send for the lease and stores the code's hash, if the validation
/// is still `new` and nobody else holds it. `false` otherwise.
pub async fn claim(batches: &Batches, id: &ObjectId, hash: &str) -> Result<bool, BatchError> {
    Ok(batches.claims.submit(id.to_string(), hash.to_owned()).await?.is_some())
}

/// How long another holder's lease still runs (`None`: not held, or not `new` any more).
pub async fn lease_left(pool: &PgPool, id: &ObjectId) -> Result<Option<Duration>, sqlx::Error> {
    let left: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (dispatch_lease_until - now()))::float8 FROM phone_validations
          WHERE id = $1 AND status = 'new' AND dispatch_lease_until > now()",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .flatten();
    Ok(left.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Gives the send back (before parking the message in a delay queue).
pub async fn release(pool: &PgPool, id: &ObjectId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE phone_validations SET dispatch_lease_until = NULL WHERE id = $1 AND status = 'new'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records the provider's confirmation and moves the validation to `sent`.
pub async fn mark_sent(
    batches: &Batches,
    id: &ObjectId,
    provider: &str,
    message_id: Option<&str>,
    attempts: u32,
    sent_at: DateTime<Utc>,
) -> Result<bool, BatchError> {
    let mut confirmation = json!({
        "sent": provider != "none" && provider != "test",
        "status": "ok",
        "provider": provider,
        "attempts": attempts,
        "sentAt": shared::time::format(&sent_at),
    });
    if let Some(message_id) = message_id {
        confirmation["messageId"] = json!(message_id);
    }
    Ok(batches
        .sent
        .submit(id.to_string(), confirmation.to_string())
        .await?
        .is_some())
}

/// What went wrong with the provider, for `providerConfirmation`.
pub struct ProviderFailure<'a> {
    pub provider: &'a str,
    pub code: Option<&'a str>,
    pub message: &'a str,
    pub attempts: u32,
}

/// Fails the validation (with the provider's error, if any) and queues its
/// `failed` event in the same transaction.
pub async fn fail(
    pool: &PgPool,
    id: &ObjectId,
    reason: FailedReason,
    failure: Option<ProviderFailure<'_>>,
) -> Result<Option<OutboxMessage>, sqlx::Error> {
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
    let mut tx = pool.begin().await?;
    let failed = validation::fail(&mut tx, id, reason, confirmation).await?;
    tx.commit().await?;
    Ok(failed.map(|(_, message)| message))
}
