//! `Idempotency-Key` on creates: the first answer for (client, key) is kept
//! for 24 hours and replayed to every retry with the same key and body; the
//! same key with another body is refused.

use crate::error::{ApiError, ApiResult};
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

const REPLAY: &str = "SELECT request_hash, response FROM idempotency_keys
          WHERE client_id = $1 AND key = $2 AND created_at > now() - interval '24 hours'";
const REMEMBER: &str = "INSERT INTO idempotency_keys (client_id, key, request_hash, response) VALUES ($1, $2, $3, $4)
         ON CONFLICT (client_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response, created_at = now()
          WHERE idempotency_keys.created_at <= now() - interval '24 hours'";

/// A request's key and the hash of its body.
pub struct IdempotencyKey {
    key: String,
    request_hash: String,
}

/// The request's key, if it sent one (`400:invalid_idempotencyKey` when malformed).
pub fn key(headers: &HeaderMap, body: &[u8]) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| (1..=255).contains(&k.len()))
        .ok_or_else(|| ApiError::invalid("idempotencyKey"))?;
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        request_hash: hex::encode(Sha256::digest(body)),
    }))
}

/// The stored answer for this key, if one is younger than 24 h. The same key
/// with a different body is refused.
pub async fn replay(pool: &PgPool, client: &ObjectId, key: &IdempotencyKey) -> ApiResult<Option<serde_json::Value>> {
    let stored: Option<(String, Json<serde_json::Value>)> = sqlx::query_as(REPLAY)
        .bind(client)
        .bind(&key.key)
        .fetch_optional(pool)
        .await?;
    match stored {
        None => Ok(None),
        Some((hash, _)) if hash != key.request_hash => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )),
        Some((_, Json(response))) => Ok(Some(response)),
    }
}

/// Keeps the answer for the key; `false` if another request holds the key.
pub async fn remember(
    tx: &mut PgConnection,
    client: &ObjectId,
    key: &IdempotencyKey,
    data: &serde_json::Value,
) -> ApiResult<bool> {
    let stored = sqlx::query(REMEMBER)
        .bind(client)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(Json(data))
        .execute(tx)
        .await?;
    Ok(stored.rows_affected() == 1)
}

/// The idempotency keys' statements, for the schema check.
pub fn statements() -> shared::db::Statements {
    [("idempotency.replay", REPLAY), ("idempotency.remember", REMEMBER)]
        .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
        .into()
}
