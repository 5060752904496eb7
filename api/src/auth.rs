//! Client tokens: HS256 JWTs with `JWT_SECRET` (`aud` `otp-client`, `sub` the
//! client id, a `jti`, and `ver`, the client's token version when it was
//! issued). `otpctl token revoke` bumps the version, and every token issued
//! before stops working: [`TokenVersions`] checks it on each request from a
//! cache that lives a couple of seconds. End users' login tokens are another
//! key and algorithm altogether (`crate::login_token`).

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

const CLIENT_AUDIENCE: &str = "otp-client";

/// How long a client's token version is trusted before it is read again: how
/// late, at most, a revocation takes effect on an instance.
pub const TOKEN_VERSION_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// A unique id, so every issued token can be named (and audited).
    #[serde(default)]
    jti: Option<String>,
    /// The client's `token_version` at issue; tokens issued before versions
    /// existed count as version 0.
    #[serde(default)]
    ver: i32,
}

/// A valid, unexpired client token: whose, and of which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub client: ObjectId,
    pub version: i32,
}

/// Signs and checks client tokens with `JWT_SECRET`.
#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Jwt {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        }
    }

    /// A token for `client` at its current token `version`, valid for `days`.
    pub fn client_token(
        &self,
        client: &ObjectId,
        version: i32,
        days: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: client.to_string(),
            aud: CLIENT_AUDIENCE.into(),
            iat: now,
            exp: now + days * 86_400,
            jti: Some(ObjectId::new().to_string()),
            ver: version,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The client and version a bearer token names, if it is well signed,
    /// unexpired and already valid (`nbf`, when present, is checked too, and a
    /// malformed `exp` or `nbf` refuses the token).
    pub fn verify_client(&self, token: &str) -> Option<ClientToken> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[CLIENT_AUDIENCE]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let data = decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(ClientToken {
            client: ObjectId::parse(&data.claims.sub).ok()?,
            version: data.claims.ver,
        })
    }
}

/// Each client's current `token_version`, read through a short-lived cache:
/// the auth path is hot, and one indexed read per client every
/// [`TOKEN_VERSION_TTL`] is all it costs. `None`: no such client.
#[derive(Clone)]
pub struct TokenVersions {
    pool: PgPool,
    cache: moka::future::Cache<ObjectId, Option<i32>>,
}

impl TokenVersions {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TOKEN_VERSION_TTL)
                .build(),
        }
    }

    /// The client's current version (concurrent misses share one query).
    pub async fn current(&self, client: &ObjectId) -> Result<Option<i32>, Arc<sqlx::Error>> {
        let pool = self.pool.clone();
        let id = client.clone();
        self.cache
            .try_get_with(client.clone(), async move {
                crate::store::clients::token_version(&pool, &id).await
            })
            .await
    }
}

/// The authenticated client of a `/v2` request.
pub struct AuthClient(pub ObjectId);

/// What a state needs to authenticate clients (`AppState` has both), so
/// this module does not import the state that holds them.
pub trait Authenticates {
    fn jwt(&self) -> &Jwt;
    fn token_versions(&self) -> &TokenVersions;
}

impl<S: Authenticates + Send + Sync> FromRequestParts<S> for AuthClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let token = state
            .jwt()
            .verify_client(token.trim())
            .ok_or_else(ApiError::unauthorized)?;
        let current = state.token_versions().current(&token.client).await.map_err(|error| {
            ApiError::Internal(anyhow::anyhow!("while reading the client's token version: {error}"))
        })?;
        match current {
            // A token of an older version was revoked; a newer one than the
            // database knows cannot have been issued by otpctl.
            Some(current) if token.version == current => Ok(AuthClient(token.client)),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-jwt-secret-7d1c0b9e4a2f6358";

    #[test]
    fn client_tokens_carry_their_version_and_expire() {
        let jwt = Jwt::new(&SecretString::from(SECRET));
        let id = ObjectId::new();
        let token = jwt.client_token(&id, 3, 1).unwrap();
        assert_eq!(
            jwt.verify_client(&token),
            Some(ClientToken {
                client: id.clone(),
                version: 3
            })
        );
        let other = Jwt::new(&SecretString::from("another-unit-test-secret-5e8a2c4b6d"));
        assert_eq!(other.verify_client(&token), None);
        let expired = jwt.client_token(&id, 0, -1).unwrap();
        assert_eq!(jwt.verify_client(&expired), None);
    }

    #[test]
    fn every_client_token_has_its_own_jti() {
        let jwt = Jwt::new(&SecretString::from(SECRET));
        let id = ObjectId::new();
        let jti = |token: String| {
            let payload = token.split('.').nth(1).unwrap().to_owned();
            let json = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()["jti"].clone()
        };
        let (a, b) = (
            jti(jwt.client_token(&id, 0, 1).unwrap()),
            jti(jwt.client_token(&id, 0, 1).unwrap()),
        );
        assert!(a.is_string());
        assert_ne!(a, b);
    }

    /// GHSA-h395-gr6q-cpjc: jsonwebtoken before 10.3 took an `nbf` that is not
    /// a number for an absent one and skipped the check.
    #[test]
    fn a_token_with_a_malformed_or_future_nbf_is_refused() {
        let jwt = Jwt::new(&SecretString::from(SECRET));
        let id = ObjectId::new();
        let now = Utc::now().timestamp();
        let sign = |nbf: serde_json::Value| {
            let claims = serde_json::json!({
                "sub": id.to_string(), "aud": CLIENT_AUDIENCE, "iat": now, "exp": now + 3600, "nbf": nbf,
            });
            encode(&Header::new(Algorithm::HS256), &claims, &jwt.encoding).unwrap()
        };
        assert!(jwt.verify_client(&sign(serde_json::json!(now - 10))).is_some());
        assert_eq!(jwt.verify_client(&sign(serde_json::json!(now + 3600))), None);
        assert_eq!(
            jwt.verify_client(&sign(serde_json::json!((now + 3600).to_string()))),
            None
        );
    }
}
