//! The `clients` table: what the API reads of a client (its token version)
//! and what the operator CLI (`otpctl`) writes.

use shared::db::Statements;
use shared::ObjectId;
use sqlx::PgPool;

const TOKEN_VERSION: &str = "SELECT token_version FROM clients WHERE id = $1";
const INSERT: &str = "INSERT INTO clients (id, name, webhook_secret) VALUES ($1, $2, $3)";
const ROTATE_SECRET: &str = "UPDATE clients SET previous_webhook_secret = webhook_secret,
                previous_webhook_secret_expires_at = now() + interval '24 hours',
                webhook_secret = $2, updated_at = now()
          WHERE id = $1";
const REVOKE_TOKENS: &str = "UPDATE clients SET token_version = token_version + 1, updated_at = now()
          WHERE id = $1 RETURNING token_version";
const MIGRATIONS_APPLIED: &str = "SELECT count(*) FROM _sqlx_migrations";

/// The client's current token version; `None` when there is no such client.
pub async fn token_version(pool: &PgPool, id: &ObjectId) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar::<_, i32>(TOKEN_VERSION)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A new client with its (sealed) webhook secret.
pub async fn insert(pool: &PgPool, id: &ObjectId, name: &str, sealed_secret: &str) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT)
        .bind(id)
        .bind(name)
        .bind(sealed_secret)
        .execute(pool)
        .await?;
    Ok(())
}

/// A new (sealed) webhook secret; the old one stays valid for 24 hours.
/// `false` when there is no such client.
pub async fn rotate_secret(pool: &PgPool, id: &ObjectId, sealed_secret: &str) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(ROTATE_SECRET)
        .bind(id)
        .bind(sealed_secret)
        .execute(pool)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Revokes every token of the client: its new version.
pub async fn revoke_tokens(pool: &PgPool, id: &ObjectId) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(REVOKE_TOKENS).bind(id).fetch_optional(pool).await
}

/// How many migrations the database has applied.
pub async fn migrations_applied(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(MIGRATIONS_APPLIED).fetch_one(pool).await
}

pub fn statements() -> Statements {
    [
        ("clients.token_version", TOKEN_VERSION),
        ("clients.insert", INSERT),
        ("clients.rotate_secret", ROTATE_SECRET),
        ("clients.revoke_tokens", REVOKE_TOKENS),
        ("clients.migrations_applied", MIGRATIONS_APPLIED),
    ]
    .map(|(name, sql)| (name.into(), sql.into()))
    .into()
}
