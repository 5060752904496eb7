//! What is POSTed to the client (docs/contract.md §8, §9). The store reads a
//! fraud-guard block straight into its part of it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::domain::PhoneValidation;
use shared::ObjectId;

/// The body POSTed to the client (docs/contract.md §8, §9).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub object: &'a WebhookObject,
    pub event_id: &'a ObjectId,
    #[serde(serialize_with = "shared::time::serialize")]
    pub occurred_at: DateTime<Utc>,
}

/// What an event is about, as the receiver gets it in `object`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum WebhookObject {
    Validation(Box<PhoneValidation>),
    Block(BlockObject),
}

/// A fraud-guard block in a `fraud_guard_blocked` webhook (docs/contract.md §9).
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct BlockObject {
    pub prefix: String,
    #[serde(serialize_with = "shared::time::serialize")]
    pub until: DateTime<Utc>,
    pub sent: i64,
    pub validated: i64,
}
