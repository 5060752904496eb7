//! Timestamps as the contract writes them: RFC 3339, UTC, milliseconds, `Z`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `serialize_with` for `DateTime<Utc>`.
pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(ts))
}

/// `serialize_with` for `Option<DateTime<Utc>>`.
pub fn serialize_opt<S: Serializer>(ts: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => serializer.serialize_str(&format(ts)),
        None => serializer.serialize_none(),
    }
}
