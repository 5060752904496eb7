//! The Phone Validation record and its status machine. One struct is both
//! the database row and the contract's JSON object, so the two cannot drift
//! apart; every statement that moves a validation's status is here, and
//! each names the status it expects, so a race can never move it backwards:
//!
//! ```text
//! new ──claim (hash stored, lease)──▶ new ──record send──▶ sent ──right code──▶ validated
//!  │                                                         │
//!  └────────────── fail (expired, attempts, provider) ───────┴──▶ failed
//! ```

use super::{FailedReason, Gateway, Language, ValidationMethod, ValidationStatus, ValidationType};
use crate::events::{ValidationEvent, ValidationEventType};
use crate::{outbox, ObjectId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use std::time::Duration;
use utoipa::ToSchema;

/// The Phone Validation object (docs/contract.md §5).
#[derive(Clone, Debug, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneValidation {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[sqlx(rename = "client_id")]
    pub client: ObjectId,
    #[sqlx(rename = "project_id")]
    pub project: ObjectId,
    #[sqlx(rename = "project_flow_id")]
    pub project_flow: ObjectId,
    pub status: ValidationStatus,
    pub country_code: String,
    pub phone: String,
    pub phone_gateway: Gateway,
    pub validation_method: ValidationMethod,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: ValidationType,
    /// bcrypt hash of the keyed code, once the dispatcher stored it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(rename = "otp_hash")]
    pub otp: Option<String>,
    /// Digits of the code (internal: the dispatcher generates, the API checks).
    #[serde(skip)]
    pub otp_length: i16,
    #[serde(serialize_with = "crate::time::serialize")]
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[schema(value_type = Object)]
    pub phone_data: Json<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra_params: Option<Json<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_url: Option<String>,
    #[serde(rename = "requires2FA")]
    #[sqlx(rename = "requires_2fa")]
    pub requires_2fa: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    pub language: Language,
    pub attempts: i32,
    pub max_attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ProviderConfirmation>)]
    pub provider_confirmation: Option<Json<serde_json::Value>>,
    #[serde(
        serialize_with = "crate::time::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub validated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_reason: Option<FailedReason>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// Every column of the object, for `SELECT` and `RETURNING` lists.
/// `providerConfirmation` as the dispatcher and the status callbacks write
/// it (docs/contract.md §5, §11). Kept as JSON in the record; this type documents
/// its fields for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // a schema, never built
pub struct ProviderConfirmation {
    /// Whether a message went out (`false` for test numbers, the `none`
    /// gateway, and a send that failed).
    sent: bool,
    /// `ok` or `error`.
    status: String,
    /// `twilio`, `vonage`, `meta`, `log`, `test` or `none`.
    provider: String,
    /// The channel of the current message: `sms`, `whatsapp` or `voice`.
    channel: Option<String>,
    /// Every message sent for this code, oldest first (a workflow's
    /// channels, failovers), each with its last known delivery status.
    history: Option<Vec<SentMessage>>,
    /// The provider's message id (Twilio's `SM…` sid, Vonage's message-id, Meta's `wamid.…`).
    message_id: Option<String>,
    /// Provider requests made.
    attempts: Option<i32>,
    #[schema(format = DateTime)]
    sent_at: Option<String>,
    /// `queued`, `sent`, `delivered`, `read`, `undelivered` or `failed`, as
    /// the provider's status callbacks report it; never goes backwards.
    delivery_status: Option<String>,
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    /// The provider's error code of an undelivered or failed message.
    delivery_error_code: Option<String>,
    /// Set when the code was sent again another way: `sms_undelivered`,
    /// `whatsapp_failed`, or a workflow's next channel (`channel_1`, `channel_2`).
    failover: Option<String>,
    /// A send that failed: the provider's error code and message.
    error_code: Option<String>,
    error: Option<String>,
}

/// One message of `providerConfirmation.history`.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // a schema, never built
pub struct SentMessage {
    /// `sms`, `whatsapp` or `voice`.
    channel: String,
    provider: String,
    /// The provider's id of the message (Twilio's `CA…` sid for a call);
    /// absent for a send the provider refused.
    message_id: Option<String>,
    #[schema(format = DateTime)]
    sent_at: String,
    /// As `deliveryStatus`; `failed` for a send the provider refused.
    delivery_status: Option<String>,
}

pub const COLUMNS: &str = "id, client_id, project_id, project_flow_id, status, country_code, phone, \
    phone_gateway, validation_method, type, otp_hash, otp_length, expires_at, name, phone_data, extra_params, \
    redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language, attempts, \
    max_attempts, provider_confirmation, validated_at, failed_reason, created_at, updated_at";

impl PhoneValidation {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    /// `+` country code and national number: where the code goes.
    pub fn e164(&self) -> String {
        format!("{}{}", self.country_code, self.phone)
    }

    /// The title of the message: the project's name at creation.
    pub fn title(&self) -> &str {
        self.phone_data.0.get("title").and_then(|t| t.as_str()).unwrap_or("")
    }
}

/// Loads one validation by id, whoever owns it (workers, not the API).
pub async fn fetch(conn: impl PgExecutor<'_>, id: &ObjectId) -> Result<Option<PhoneValidation>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM phone_validations WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
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
    let failed: Option<PhoneValidation> = sqlx::query_as(&format!(
        "UPDATE phone_validations
            SET status = 'failed', failed_reason = $2,
                provider_confirmation = COALESCE($3, provider_confirmation),
                updated_at = now()
          WHERE id = $1 AND status IN ('new', 'sent')
      RETURNING {COLUMNS}"
    ))
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
    sqlx::query_as(
        "UPDATE phone_validations SET attempts = attempts + 1, updated_at = now()
          WHERE id = $1 AND status IN ('new', 'sent') AND otp_hash IS NOT NULL
            AND attempts < max_attempts AND expires_at > now()
      RETURNING attempts, max_attempts, otp_hash",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The right code: `validated` (the attempt is given back: `attempts` counts
/// wrong codes) and its event queued in the same transaction. `None` when it
/// moved on meanwhile.
pub async fn validate(
    tx: &mut PgConnection,
    id: &ObjectId,
) -> Result<Option<(PhoneValidation, outbox::OutboxMessage)>, sqlx::Error> {
    let validated: Option<PhoneValidation> = sqlx::query_as(&format!(
        "UPDATE phone_validations
            SET status = 'validated', validated_at = now(), attempts = attempts - 1, updated_at = now()
          WHERE id = $1 AND status IN ('new', 'sent') AND otp_hash IS NOT NULL
      RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
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
    sqlx::query_scalar(
        "UPDATE phone_validations AS v
            SET otp_hash = c.hash, dispatch_lease_holder = $3,
                dispatch_lease_until = now() + make_interval(secs => $4), updated_at = now()
           FROM unnest($1::text[], $2::text[]) AS c(id, hash)
          WHERE v.id = c.id AND v.status = 'new'
            AND (v.dispatch_lease_until IS NULL OR v.dispatch_lease_until < now())
      RETURNING v.id",
    )
    .bind(ids)
    .bind(hashes)
    .bind(holder)
    .bind(lease.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// Records the providers' confirmations (JSON text) of sends `holder` holds:
/// `new` becomes `sent` (a validation the user already validated, or one
/// that failed meanwhile, keeps its status and gains the confirmation), and
/// each message id is kept for the provider's status callbacks. Returns the
/// ids recorded; a send taken over by another holder is not.
pub async fn record_sends(
    conn: impl PgExecutor<'_>,
    ids: Vec<ObjectId>,
    confirmations: Vec<String>,
    holder: &str,
) -> Result<Vec<ObjectId>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH recorded AS (
            UPDATE phone_validations AS v
               SET status = CASE WHEN v.status = 'new' THEN 'sent' ELSE v.status END,
                   provider_confirmation = c.confirmation::jsonb,
                   dispatch_lease_until = NULL, dispatch_lease_holder = NULL, updated_at = now()
              FROM unnest($1::text[], $2::text[]) AS c(id, confirmation)
             WHERE v.id = c.id AND v.dispatch_lease_holder = $3
         RETURNING v.id, c.confirmation::jsonb AS confirmation
         ), messages AS (
            INSERT INTO provider_messages (message_id, validation_id, provider)
            SELECT confirmation->>'messageId', id, confirmation->>'provider'
              FROM recorded WHERE confirmation ? 'messageId'
            ON CONFLICT (message_id) DO NOTHING
         )
         SELECT id FROM recorded",
    )
    .bind(ids)
    .bind(confirmations)
    .bind(holder)
    .fetch_all(conn)
    .await
}

/// Keeps a send `holder` holds for another `lease` (before a retry).
pub async fn renew_lease(
    conn: impl PgExecutor<'_>,
    id: &ObjectId,
    holder: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE phone_validations SET dispatch_lease_until = now() + make_interval(secs => $3)
          WHERE id = $1 AND dispatch_lease_holder = $2 AND status = 'new'",
    )
    .bind(id)
    .bind(holder)
    .bind(lease.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Gives a send `holder` holds back (before its message waits in a delay queue).
pub async fn release_send(conn: impl PgExecutor<'_>, id: &ObjectId, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE phone_validations SET dispatch_lease_until = NULL, dispatch_lease_holder = NULL
          WHERE id = $1 AND dispatch_lease_holder = $2 AND status = 'new'",
    )
    .bind(id)
    .bind(holder)
    .execute(conn)
    .await?;
    Ok(())
}

/// How long another holder's lease on the send still runs (`None`: not
/// held, or not `new` any more).
pub async fn lease_left(conn: impl PgExecutor<'_>, id: &ObjectId) -> Result<Option<Duration>, sqlx::Error> {
    let left: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (dispatch_lease_until - now()))::float8 FROM phone_validations
          WHERE id = $1 AND status = 'new' AND dispatch_lease_until > now()",
    )
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
    let superseded: Vec<PhoneValidation> = sqlx::query_as(&format!(
        "UPDATE phone_validations AS v
            SET status = 'failed', failed_reason = 'superseded', updated_at = now()
           FROM unnest($2::text[], $3::text[]) AS p(country_code, phone)
          WHERE v.client_id = $1 AND v.country_code = p.country_code AND v.phone = p.phone
            AND v.status IN ('new', 'sent') AND v.id <> ALL($4)
      RETURNING {}",
        COLUMNS
            .split(", ")
            .map(|column| format!("v.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
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
