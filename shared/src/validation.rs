//! The Phone Validation record: one struct is both the database row and the
//! contract's JSON object, so the two cannot drift apart. The status machine's
//! conditional updates that several processes share live here too.

use crate::domain::{FailedReason, Gateway, Language, ValidationMethod, ValidationStatus, ValidationType};
use crate::events::{ValidationEvent, ValidationEventType};
use crate::{outbox, ObjectId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::PgConnection;
use utoipa::ToSchema;

/// The Phone Validation object (CONTRACT §5).
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
    #[schema(value_type = Option<Object>)]
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
pub const COLUMNS: &str = "id, client_id, project_id, project_flow_id, status, country_code, phone, \
    phone_gateway, validation_method, type, otp_hash, otp_length, expires_at, name, phone_data, extra_params, \
    redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language, attempts, \
    max_attempts, provider_confirmation, validated_at, failed_reason, created_at, updated_at";

impl PhoneValidation {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

/// Loads one validation by id, whoever owns it (workers, not the API).
pub async fn fetch(conn: &mut PgConnection, id: &ObjectId) -> Result<Option<PhoneValidation>, sqlx::Error> {
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
    match failed {
        None => Ok(None),
        Some(validation) => {
            let event = ValidationEvent::new(ValidationEventType::Failed, validation.clone());
            let message = outbox::enqueue(tx, &event).await?;
            Ok(Some((validation, message)))
        }
    }
}
