//! The fraud guard's state in PostgreSQL (docs/contract.md §9), shared by
//! the API (creates, and the upkeep that judges every flow each tick) and
//! the dispatcher (a workflow's later steps, judged one number at a time):
//! the blocks that refuse a number, the judge's statements and verdicts
//! (`judge.rs`, on the pure rules of `crate::domain::fraud`), and the
//! `FRAUD_GUARD_*` settings both read.

pub mod judge;

use crate::config::{self, ConfigError};
use crate::ObjectId;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::sync::LazyLock;
use std::time::Duration;

pub use crate::domain::fraud::prefix_of;

/// `FRAUD_GUARD_*`.
#[derive(Clone, Copy, Debug)]
pub struct GuardConfig {
    /// `FRAUD_GUARD_GRACE_SECONDS`: sends younger than this are not judged.
    pub grace: Duration,
    /// `FRAUD_GUARD_BLOCK_SECONDS`: how long a block lasts.
    pub block: Duration,
    /// `FRAUD_GUARD_WINDOW_SECONDS`: how far back sends are judged.
    pub window: Duration,
    /// `FRAUD_GUARD_INTERVAL_MS`: how often counts are folded and judged (the API's upkeep).
    pub interval: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(120),
            block: Duration::from_secs(3600),
            window: Duration::from_secs(3600),
            interval: Duration::from_secs(1),
        }
    }
}

impl GuardConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let config = Self {
            grace: Duration::from_secs(config::parse_or("FRAUD_GUARD_GRACE_SECONDS", defaults.grace.as_secs())?),
            block: Duration::from_secs(config::parse_or("FRAUD_GUARD_BLOCK_SECONDS", defaults.block.as_secs())?),
            window: Duration::from_secs(config::parse_or(
                "FRAUD_GUARD_WINDOW_SECONDS",
                defaults.window.as_secs(),
            )?),
            interval: Duration::from_millis(config::parse_or(
                "FRAUD_GUARD_INTERVAL_MS",
                u64::try_from(defaults.interval.as_millis()).unwrap_or(1000),
            )?),
        };
        if config.window <= config.grace {
            return Err(ConfigError::Invalid {
                name: "FRAUD_GUARD_WINDOW_SECONDS",
                reason: "must be longer than FRAUD_GUARD_GRACE_SECONDS".into(),
            });
        }
        if config.block.is_zero() || config.interval.is_zero() {
            return Err(ConfigError::Invalid {
                name: "FRAUD_GUARD_BLOCK_SECONDS",
                reason: "FRAUD_GUARD_BLOCK_SECONDS and FRAUD_GUARD_INTERVAL_MS must be positive".into(),
            });
        }
        Ok(config)
    }
}

/// A block is active until it ends or is lifted.
pub const ACTIVE: &str = "lifted_at IS NULL AND until > now()";

static BLOCKING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT until FROM fraud_blocks
          WHERE client_id = $1 AND prefix IN ($2, $3) AND {ACTIVE}
            AND NOT EXISTS (SELECT 1 FROM safe_list s
                             WHERE s.client_id = $1 AND s.country_code = $3 AND s.phone = $4)
          ORDER BY until DESC LIMIT 1"
    )
});

/// The end of the client's block that refuses this number (of
/// `country_code`, with canonical national digits `national`), if any: its
/// prefix's own, else its calling code's; none for a number on the
/// client's safe list.
pub async fn blocking(
    conn: &mut PgConnection,
    client: &ObjectId,
    country_code: &str,
    national: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(&BLOCKING)
        .bind(client)
        .bind(prefix_of(country_code, national))
        .bind(country_code)
        .bind(national)
        .fetch_optional(conn)
        .await
}

/// Every statement of the fraud guard held here, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        vec![("fraud.blocking".to_owned(), BLOCKING.clone())],
        judge::statements(),
    ]
    .concat()
}
