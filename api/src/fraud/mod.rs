//! The fraud guard (docs/contract.md §9): what it remembers (blocks), how it
//! judges (`judge.rs`, on the verdicts of `shared::domain::fraud`), and the
//! caller-keyed rate limits (`rate_limits.rs`). Every piece of its state
//! is in PostgreSQL, so any number of API instances see the same blocks and
//! counters; one of them at a time (an advisory lock) folds and judges.
//! The statements and verdicts the dispatcher shares (blocks that refuse a
//! number, the judge, the windows) are in `shared::store::{fraud, rate_limits}`.

pub mod blocks;
pub mod judge;
pub mod rate_limits;

pub use shared::store::fraud::{prefix_of, GuardConfig};

use crate::error::ApiError;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};

/// `403:fraud_guard_blocked`, `Retry-After` the block's end (`until`),
/// counted under `fraud_guard_refused_total`.
pub fn refused(until: DateTime<Utc>) -> ApiError {
    metrics::counter!("fraud_guard_refused_total").increment(1);
    let wait = (until - Utc::now()).num_seconds().max(1);
    ApiError::new(StatusCode::FORBIDDEN, "fraud_guard_blocked").with_retry_after(u64::try_from(wait).unwrap_or(1))
}

/// Every statement of the fraud guard, for the schema check.
pub fn statements() -> shared::db::Statements {
    [blocks::statements(), judge::statements()].concat()
}
