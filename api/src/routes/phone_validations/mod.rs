//! Phone validations: create (and publish `otp.requested`), validate a code,
//! read and list (docs/contract.md §4.2–4.4).

pub mod create;
pub mod flow_cache;
pub mod group_commit;
pub mod idempotency;
pub mod insert;
pub mod next_channel;
pub mod read;
pub mod send_limits;
pub mod stats;
pub mod validate;

use crate::error::ApiError;
use serde::Deserialize;
use shared::domain::{CountryCode, PhoneNumber};

/// A field clients send as a JSON string or number (`phone`, `otp`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StringOrNumber {
    String(String),
    Number(u64),
}

impl StringOrNumber {
    pub fn into_string(self) -> String {
        match self {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }
    }
}

/// Parses `countryCode` and `phone` into a number possible for its country.
pub fn parse_phone(country_code: &str, phone: &str) -> Result<PhoneNumber, ApiError> {
    let country = CountryCode::parse(country_code).map_err(|_| ApiError::invalid("countryCode"))?;
    PhoneNumber::parse(country, phone).map_err(|_| ApiError::invalid("phone"))
}
