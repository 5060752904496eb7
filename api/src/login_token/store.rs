//! The login-token keys every API instance shares, in `login_token_keys`
//! (migration 0017): the private key sealed with `WEBHOOK_SECRET_KEY`, the
//! public key in the clear.

use super::keyset::PUBLISHED_AFTER_SUCCESSOR;
use super::{KeyError, LoginKey};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use shared::webhook_secrets::WebhookSecretKeys;
use sqlx::{PgExecutor, PgPool};

const KEYS: &str = "SELECT generation, kid, public_key, private_key, signs_from
           FROM login_token_keys ORDER BY generation";
const INSERT_KEY: &str = "INSERT INTO login_token_keys (generation, kid, public_key, private_key, signs_from)
         SELECT 1, $1, $2, $3, now()
          WHERE NOT EXISTS (SELECT 1 FROM login_token_keys)
         ON CONFLICT DO NOTHING";
const NEWEST_KEY: &str = "SELECT generation, kid FROM login_token_keys ORDER BY generation DESC LIMIT 1";
const INSERT_ROTATED: &str = "INSERT INTO login_token_keys (generation, kid, public_key, private_key, signs_from)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
         ON CONFLICT DO NOTHING
         RETURNING signs_from";
const DELETE_OLD: &str = "DELETE FROM login_token_keys old
          WHERE EXISTS (SELECT 1 FROM login_token_keys newer
                         WHERE newer.generation > old.generation
                           AND newer.signs_from < now() - make_interval(secs => $1))";

/// How far ahead of its first signature `otpctl keys rotate` publishes a new
/// key: longer than a client may cache the JWKS (`max-age=300` on
/// `GET /.well-known/jwks.json`) plus a few of the instances' refreshes
/// ([`super::KEY_REFRESH`]), so every instance's JWKS, and every client's
/// cached copy, has the key before any token carries it.
pub const PUBLISH_AHEAD: Duration = Duration::seconds(310);

/// One row of `login_token_keys`.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredKey {
    pub generation: i32,
    pub kid: String,
    pub public_key: Vec<u8>,
    /// Sealed: `enc:v1:<sealing key id>:<base64>`.
    pub private_key: String,
    pub signs_from: DateTime<Utc>,
}

impl StoredKey {
    /// What binds a sealed private key to its row: it opens for this kid only.
    fn aad(kid: &str) -> Vec<u8> {
        format!("otp-login-token-key:{kid}").into_bytes()
    }

    pub fn seal(
        generation: i32,
        key: &LoginKey,
        sealing: &WebhookSecretKeys,
        signs_from: DateTime<Utc>,
    ) -> Result<Self, KeyError> {
        let kid = key.kid();
        Ok(Self {
            generation,
            private_key: sealing.seal_bytes(&Self::aad(&kid), &key.seed())?,
            public_key: key.public_bytes().to_vec(),
            kid,
            signs_from,
        })
    }

    /// The private key, checked against the row's kid.
    pub fn open(&self, sealing: &WebhookSecretKeys) -> Result<LoginKey, KeyError> {
        let seed = sealing.open_bytes(&Self::aad(&self.kid), &self.private_key)?;
        let key = LoginKey::from_seed(&seed).ok_or_else(|| KeyError::Stored(self.kid.clone()))?;
        if key.kid() != self.kid {
            return Err(KeyError::Stored(self.kid.clone()));
        }
        Ok(key)
    }
}

/// Every stored key, oldest generation first (a handful: rotations delete
/// keys no longer published).
pub async fn load(pool: &PgPool) -> Result<Vec<StoredKey>, KeyError> {
    Ok(sqlx::query_as(KEYS).fetch_all(pool).await?)
}

/// Stores a first key if there is none. Two instances starting at once on an
/// empty table both try generation 1: one inserts, the other's insert does
/// nothing once the first commits, and both then read the same row.
pub async fn ensure_key(db: impl PgExecutor<'_>, sealing: &WebhookSecretKeys) -> Result<(), KeyError> {
    let row = StoredKey::seal(1, &LoginKey::generate(), sealing, Utc::now())?;
    let inserted = sqlx::query(INSERT_KEY)
        .bind(&row.kid)
        .bind(&row.public_key)
        .bind(&row.private_key)
        .execute(db)
        .await?;
    if inserted.rows_affected() == 1 {
        tracing::info!(kid = %row.kid, "login-token key generated and stored");
    }
    Ok(())
}

/// What `otpctl keys rotate` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    /// The new key's kid, published now.
    pub kid: String,
    /// When instances start signing with it.
    pub signs_from: DateTime<Utc>,
    /// The key it replaces, if any.
    pub previous_kid: Option<String>,
    /// Until when the previous key stays in the JWKS: its last tokens expire by then.
    pub previous_published_until: Option<DateTime<Utc>>,
    /// Keys deleted because no token signed with them can still be valid.
    pub deleted: u64,
}

/// Adds the next generation, signing from [`PUBLISH_AHEAD`] on, and deletes
/// the keys whose successor has signed for longer than they are published.
/// A rotation racing another one fails (the generation is taken) rather
/// than adding two keys.
pub async fn rotate(pool: &PgPool, sealing: &WebhookSecretKeys) -> Result<Rotated, KeyError> {
    let mut tx = pool.begin().await?;
    let previous: Option<(i32, String)> = sqlx::query_as(NEWEST_KEY).fetch_optional(&mut *tx).await?;
    let generation = previous.as_ref().map_or(1, |(generation, _)| generation + 1);
    let key = LoginKey::generate();
    let row = StoredKey::seal(generation, &key, sealing, Utc::now())?;
    let signs_from: Option<DateTime<Utc>> = sqlx::query_scalar(INSERT_ROTATED)
        .bind(generation)
        .bind(&row.kid)
        .bind(&row.public_key)
        .bind(&row.private_key)
        .bind(PUBLISH_AHEAD.num_seconds() as f64)
        .fetch_optional(&mut *tx)
        .await?;
    let signs_from = signs_from.ok_or(KeyError::ConcurrentRotation)?;
    let deleted = sqlx::query(DELETE_OLD)
        .bind(PUBLISHED_AFTER_SUCCESSOR.num_seconds() as f64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Rotated {
        kid: row.kid,
        signs_from,
        previous_published_until: previous.as_ref().map(|_| signs_from + PUBLISHED_AFTER_SUCCESSOR),
        previous_kid: previous.map(|(_, kid)| kid),
        deleted,
    })
}

/// The login-token keys' statements, for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        ("login_token_keys.load", KEYS),
        ("login_token_keys.insert_first", INSERT_KEY),
        ("login_token_keys.newest", NEWEST_KEY),
        ("login_token_keys.insert_rotated", INSERT_ROTATED),
        ("login_token_keys.delete_old", DELETE_OLD),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
