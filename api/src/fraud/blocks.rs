//! Blocks: a client's prefix (or whole calling code) refused until a time.
//! A block is a row that is never updated but to lift it, so its history
//! stays readable; the judge counts a prefix's sends only from its last
//! block's end, so a lifted or expired block is not set off again by the
//! sends that caused it. Which block refuses a number is
//! `shared::store::fraud::blocking` (the dispatcher asks too).

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::store::fraud::ACTIVE;
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::LazyLock;
use utoipa::ToSchema;

/// An active block, as `GET /v2/fraud-guard/blocks` lists it.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    /// `+507626`, or a calling code (`+507`) when the attack was spread over its prefixes.
    pub prefix: String,
    #[serde(serialize_with = "shared::time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub blocked_at: DateTime<Utc>,
    #[serde(serialize_with = "shared::time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub until: DateTime<Utc>,
    /// Judged sends and how many of them were validated, when it was set off.
    pub sent: i64,
    pub validated: i64,
    /// `low_conversion` (the prefix) or `low_conversion_country` (its calling code).
    pub reason: String,
}

static ACTIVE_BLOCKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT client_id, prefix, blocked_at, until, sent, validated, reason FROM fraud_blocks
          WHERE ($1::text IS NULL OR client_id = $1) AND {ACTIVE}
          ORDER BY blocked_at DESC, prefix LIMIT 1000"
    )
});

static LIFT: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE fraud_blocks SET lifted_at = now() WHERE client_id = $1 AND prefix = $2 AND {ACTIVE}")
});

static COUNT_ACTIVE: LazyLock<String> = LazyLock::new(|| format!("SELECT count(*) FROM fraud_blocks WHERE {ACTIVE}"));

/// The client's active blocks, newest first.
pub async fn active(pool: &PgPool, client: Option<&ObjectId>) -> Result<Vec<(ObjectId, Block)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        client_id: ObjectId,
        #[sqlx(flatten)]
        block: Block,
    }
    let rows: Vec<Row> = sqlx::query_as(&ACTIVE_BLOCKS).bind(client).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|r| (r.client_id, r.block)).collect())
}

/// Lifts the client's active block of `prefix`; false when there is none.
pub async fn lift(pool: &PgPool, client: &ObjectId, prefix: &str) -> Result<bool, sqlx::Error> {
    let lifted = sqlx::query(&LIFT).bind(client).bind(prefix).execute(pool).await?;
    Ok(lifted.rows_affected() > 0)
}

/// How many blocks are active (all clients): the `fraud_guard_active_blocks` gauge.
pub async fn count_active(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&COUNT_ACTIVE).fetch_one(pool).await
}

/// The blocks' statements, for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        ("blocks.active", &ACTIVE_BLOCKS),
        ("blocks.lift", &LIFT),
        ("blocks.count_active", &COUNT_ACTIVE),
    ]
    .map(|(name, sql)| (name.to_owned(), String::clone(sql)))
    .into()
}
