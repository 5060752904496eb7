//! The Phone Validation record and its status machine. One struct is both
//! the database row and the contract's JSON object, so the two cannot drift
//! apart. Every statement that moves a validation's status is in
//! `crate::store::phone_validations` (a floor up: it queues each move's
//! event in the outbox), and each names the status it expects, so a race
//! can never move it backwards:
//!
//! ```text
//! new ──claim (hash stored, lease)──▶ new ──record send──▶ sent ──right code──▶ validated
//!  │                                                         │
//!  └────────────── fail (expired, attempts, provider) ───────┴──▶ failed
//! ```

use super::{FailedReason, Gateway, Language, ValidationMethod, ValidationStatus, ValidationType};
use crate::ObjectId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
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
    /// An SMS send: the parts it was billed as (docs/contract.md §14).
    segments: Option<i32>,
    /// An SMS send: `GSM-7` or `UCS-2`.
    encoding: Option<String>,
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
