//! The fraud guard (docs/contract.md §9): what it remembers (blocks), how it
//! judges (`judge.rs`, on the verdicts of `shared::domain::fraud`), and the
//! caller-keyed rate limits (`rate_limits.rs`). Every piece of its state
//! is in PostgreSQL, so any number of API instances see the same blocks and
//! counters; one of them at a time (an advisory lock) folds and judges.

pub mod blocks;
pub mod judge;
pub mod rate_limits;

use shared::config::{self, ConfigError};
use std::time::Duration;

/// `FRAUD_GUARD_*`.
#[derive(Clone, Copy, Debug)]
pub struct GuardConfig {
    /// `FRAUD_GUARD_GRACE_SECONDS`: sends younger than this are not judged.
    pub grace: Duration,
    /// `FRAUD_GUARD_BLOCK_SECONDS`: how long a block lasts.
    pub block: Duration,
    /// `FRAUD_GUARD_WINDOW_SECONDS`: how far back sends are judged.
    pub window: Duration,
    /// `FRAUD_GUARD_INTERVAL_MS`: how often counts are folded and judged.
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

/// The guard's prefix of a number: calling code and the first 3 national
/// digits (`+507` + `626…` → `+507626`).
pub fn prefix_of(country_code: &str, national: &str) -> String {
    let digits: String = national.chars().take(3).collect();
    format!("{country_code}{digits}")
}

/// Every statement of the fraud guard, for the schema check.
pub fn statements() -> shared::db::Statements {
    [blocks::statements(), judge::statements(), rate_limits::statements()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_the_calling_code_and_three_digits() {
        assert_eq!(prefix_of("+507", "62612345"), "+507626");
        assert_eq!(prefix_of("+1", "4155550100"), "+1415");
        assert_eq!(prefix_of("+44", "79"), "+4479");
    }
}
