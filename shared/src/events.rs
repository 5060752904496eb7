//! The messages that travel through RabbitMQ, one type per routing key
//! (docs/contract.md §6). Producers and consumers share these definitions.

use crate::domain::PhoneValidation;
use crate::ObjectId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Routing keys on the `otp.events` exchange.
pub mod routing {
    pub const OTP_REQUESTED: &str = "otp.requested";
    /// A sent code was reported undelivered: send it again another way.
    pub const OTP_FAILOVER: &str = "otp.failover";
    pub const VALIDATED: &str = "phone_validation.validated";
    pub const FAILED: &str = "phone_validation.failed";
    /// Lifecycle events for webhook endpoints (docs/contract.md §13): a code
    /// left through a provider, a provider's delivery receipt.
    pub const SENT: &str = "phone_validation.sent";
    pub const DELIVERED: &str = "phone_validation.delivered";
    pub const UNDELIVERED: &str = "phone_validation.undelivered";
    /// The fraud guard blocked a prefix (docs/contract.md §9): a webhook to the flow.
    pub const FRAUD_GUARD_BLOCKED: &str = "fraud_guard.blocked";
}

/// An event that can be published: it knows its routing key and id.
pub trait Event: Serialize {
    fn routing_key(&self) -> &'static str;
    /// Unique per event, stable across redeliveries: the AMQP message-id.
    fn event_id(&self) -> &str;
}

/// A validation was accepted and needs a code sent. Carries no secret: the
/// dispatcher reads the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtpRequested {
    pub event_id: ObjectId,
    pub validation_id: ObjectId,
    #[serde(serialize_with = "crate::time::serialize")]
    pub occurred_at: DateTime<Utc>,
}

impl OtpRequested {
    pub fn new(validation_id: ObjectId) -> Self {
        Self {
            event_id: ObjectId::new(),
            validation_id,
            occurred_at: Utc::now(),
        }
    }
}

impl Event for OtpRequested {
    fn routing_key(&self) -> &'static str {
        routing::OTP_REQUESTED
    }
    fn event_id(&self) -> &str {
        self.event_id.as_str()
    }
}

/// A provider reported a sent code undelivered: the dispatcher sends the
/// same code once more, by the next SMS provider or by SMS instead of
/// WhatsApp. Carries no secret; the failover's row says what to avoid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtpFailover {
    pub event_id: ObjectId,
    pub validation_id: ObjectId,
    /// `sms_undelivered`, `whatsapp_failed`, or a workflow's next channel
    /// (`channel_<index>`, see `domain::workflow`).
    pub cause: String,
    #[serde(serialize_with = "crate::time::serialize")]
    pub occurred_at: DateTime<Utc>,
    /// A workflow's timer: not before this instant (the channel timeout
    /// after the previous send); absent for a send wanted now.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::serialize_opt"
    )]
    pub not_before: Option<DateTime<Utc>>,
}

impl OtpFailover {
    pub fn new(validation_id: ObjectId, cause: &str) -> Self {
        Self {
            event_id: ObjectId::new(),
            validation_id,
            cause: cause.to_owned(),
            occurred_at: Utc::now(),
            not_before: None,
        }
    }

    /// A workflow step due at `due`.
    pub fn timer(validation_id: ObjectId, cause: &str, due: DateTime<Utc>) -> Self {
        Self {
            not_before: Some(due),
            ..Self::new(validation_id, cause)
        }
    }
}

impl Event for OtpFailover {
    fn routing_key(&self) -> &'static str {
        routing::OTP_FAILOVER
    }
    fn event_id(&self) -> &str {
        self.event_id.as_str()
    }
}

/// The fraud guard blocked a prefix of a client. Carries only the block's
/// id: the webhook worker reads the block (and its flow's URL) from the
/// database, as it does validations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FraudGuardBlocked {
    pub event_id: ObjectId,
    /// Always `fraud_guard_blocked`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(serialize_with = "crate::time::serialize")]
    pub occurred_at: DateTime<Utc>,
    pub data: BlockRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockRef {
    #[serde(rename = "_id")]
    pub id: ObjectId,
}

impl FraudGuardBlocked {
    pub const TYPE: &'static str = "fraud_guard_blocked";

    pub fn new(block: ObjectId) -> Self {
        Self {
            event_id: ObjectId::new(),
            kind: Self::TYPE.to_owned(),
            occurred_at: Utc::now(),
            data: BlockRef { id: block },
        }
    }
}

impl Event for FraudGuardBlocked {
    fn routing_key(&self) -> &'static str {
        routing::FRAUD_GUARD_BLOCKED
    }
    fn event_id(&self) -> &str {
        self.event_id.as_str()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidationEventType {
    #[serde(rename = "phone_validation_validated")]
    Validated,
    #[serde(rename = "phone_validation_failed")]
    Failed,
}

impl ValidationEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationEventType::Validated => "phone_validation_validated",
            ValidationEventType::Failed => "phone_validation_failed",
        }
    }
}

/// A validation reached a final status: `validated` or `failed`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationEvent {
    pub event_id: ObjectId,
    #[serde(rename = "type")]
    pub kind: ValidationEventType,
    #[serde(serialize_with = "crate::time::serialize")]
    pub occurred_at: DateTime<Utc>,
    pub data: PhoneValidation,
}

impl ValidationEvent {
    pub fn new(kind: ValidationEventType, data: PhoneValidation) -> Self {
        Self {
            event_id: ObjectId::new(),
            kind,
            occurred_at: Utc::now(),
            data,
        }
    }
}

impl Event for ValidationEvent {
    fn routing_key(&self) -> &'static str {
        match self.kind {
            ValidationEventType::Validated => routing::VALIDATED,
            ValidationEventType::Failed => routing::FAILED,
        }
    }
    fn event_id(&self) -> &str {
        self.event_id.as_str()
    }
}

/// A lifecycle event of a validation for webhook endpoints (docs/contract.md
/// §13): `phone_validation_sent`, `_delivered` or `_undelivered`. Like
/// [`FraudGuardBlocked`] it carries only the validation's id: the webhook
/// worker reads the validation when it fans the event out, so the hot path
/// that records a send builds no JSON of the record. Producers write these
/// only when the client has an enabled endpoint subscribed to the type (the
/// condition is part of the statement that writes the outbox row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEvent {
    pub event_id: ObjectId,
    #[serde(rename = "type")]
    pub kind: crate::domain::WebhookEventType,
    #[serde(serialize_with = "crate::time::serialize")]
    pub occurred_at: DateTime<Utc>,
    pub data: ValidationRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationRef {
    #[serde(rename = "_id")]
    pub id: ObjectId,
}

impl LifecycleEvent {
    pub fn new(kind: crate::domain::WebhookEventType, validation: ObjectId) -> Self {
        Self {
            event_id: ObjectId::new(),
            kind,
            occurred_at: Utc::now(),
            data: ValidationRef { id: validation },
        }
    }
}

impl Event for LifecycleEvent {
    fn routing_key(&self) -> &'static str {
        use crate::domain::WebhookEventType as Kind;
        match self.kind {
            Kind::Sent => routing::SENT,
            Kind::Delivered => routing::DELIVERED,
            Kind::Undelivered => routing::UNDELIVERED,
            Kind::Validated => routing::VALIDATED,
            Kind::Failed => routing::FAILED,
            Kind::FraudGuardBlocked => routing::FRAUD_GUARD_BLOCKED,
        }
    }
    fn event_id(&self) -> &str {
        self.event_id.as_str()
    }
}
