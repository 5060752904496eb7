//! MongoDB-style ObjectIds: 4 bytes of Unix seconds, 5 random bytes drawn once
//! per process, a 3-byte counter. Minted by the application, time-ordered, and
//! unique across instances without a shared sequence.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A 24-character lowercase hex id. `parse` is the only way in from outside.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ObjectId(String);

/// The string is not a 24-character lowercase hex id.
#[derive(Debug, thiserror::Error)]
#[error("not an ObjectId")]
pub struct InvalidObjectId;

fn process_unique() -> &'static [u8; 5] {
    static UNIQUE: OnceLock<[u8; 5]> = OnceLock::new();
    UNIQUE.get_or_init(|| {
        let mut bytes = [0u8; 5];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes
    })
}

fn next_counter() -> u32 {
    static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
    COUNTER
        .get_or_init(|| AtomicU32::new(rand::rngs::OsRng.next_u32()))
        .fetch_add(1, Ordering::Relaxed)
}

impl ObjectId {
    /// Mints a new id for the current second.
    pub fn new() -> Self {
        let seconds = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&seconds.to_be_bytes());
        bytes[4..9].copy_from_slice(process_unique());
        bytes[9..].copy_from_slice(&next_counter().to_be_bytes()[1..]);
        Self(hex::encode(bytes))
    }

    /// Accepts exactly 24 lowercase hex characters.
    pub fn parse(value: &str) -> Result<Self, InvalidObjectId> {
        let ok = value.len() == 24 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidObjectId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ObjectId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for ObjectId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{24}$"))
            .examples([serde_json::json!("674de8df21c72be3cc42b8a7")])
            .into()
    }
}
impl utoipa::ToSchema for ObjectId {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_ids_parse_and_sort_by_creation() {
        let a = ObjectId::new();
        let b = ObjectId::new();
        assert!(ObjectId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
        assert_eq!(a.as_str()[..8], b.as_str()[..8]);
    }

    proptest! {
        #[test]
        fn parse_accepts_only_24_lowercase_hex(s in "\\PC{0,30}") {
            let ok = s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
            prop_assert_eq!(ObjectId::parse(&s).is_ok(), ok);
        }

        #[test]
        fn parse_round_trips_hex(bytes in proptest::array::uniform12(any::<u8>())) {
            let text = hex::encode(bytes);
            prop_assert_eq!(ObjectId::parse(&text).map(|id| id.to_string()).ok(), Some(text));
        }
    }
}
