//! The end user's login token: an EdDSA (Ed25519) JWT with
//! a key of its own, never `JWT_SECRET`, so a client verifies it with the
//! public key served at `GET /.well-known/jwks.json` and holds no secret that
//! could mint client tokens. `aud` is the client's id, `iss` the issuer.
//!
//! The keys every instance signs with and publishes live in PostgreSQL
//! ([`store`]): made once by the first instance to start, rotated by
//! `otpctl keys rotate`, each published until its last token has expired.
//! Every instance reads them again every [`KEY_REFRESH`]. `LOGIN_TOKEN_KEY`,
//! when set, signs instead; the stored keys are still published.

mod keyset;
pub mod store;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use keyset::KeySet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::webhook_secrets::{OpenError, WebhookSecretKeys};
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often an instance reads the stored keys again: how late, at most, it
/// sees a rotation (which publishes a key [`store::PUBLISH_AHEAD`] before it
/// signs, several refreshes later).
pub const KEY_REFRESH: Duration = Duration::from_secs(2);

/// How long an end user's token is valid.
pub const LOGIN_TOKEN_SECONDS: i64 = 3600;

/// A login token's claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginClaims {
    /// The validation's id.
    pub sub: String,
    /// The client's id: a token is meant for the client whose user logged in.
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// E.164.
    pub phone: String,
}

/// An Ed25519 private key: `LOGIN_TOKEN_KEY` (PKCS#8 PEM) or a stored one.
#[derive(Clone)]
pub struct LoginKey(SigningKey);

impl std::fmt::Debug for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginKey(kid {})", self.kid())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM or its one-line base64 body (`otpctl keys generate` makes one)")]
    Parse,
    #[error("could not encode the key")]
    Encode,
    #[error("the stored login-token key {0} does not match its kid or public key")]
    Stored(String),
    #[error("a stored login-token key could not be opened: {0}")]
    Sealing(#[from] OpenError),
    #[error("login-token keys are stored sealed with WEBHOOK_SECRET_KEY, which is not set (or set LOGIN_TOKEN_KEY)")]
    NoSealingKey,
    #[error("no login-token key is stored")]
    NoKey,
    #[error("another rotation added a key at the same time; this one changed nothing")]
    ConcurrentRotation,
    #[error("while reading or writing the login-token keys: {0}")]
    Database(#[from] sqlx::Error),
    #[error("could not sign the login token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl LoginKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// PKCS#8 PEM, or (for `.env` files, which hold one line) the base64
    /// body of the PEM on one line: the PKCS#8 DER.
    pub fn from_pem(pem: &SecretString) -> Result<Self, KeyError> {
        let text = pem.expose_secret().trim();
        let parsed = if text.starts_with("-----BEGIN") {
            SigningKey::from_pkcs8_pem(text).ok()
        } else {
            let der = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| KeyError::Parse)?;
            SigningKey::from_pkcs8_der(&der).ok()
        };
        parsed.map(Self).ok_or(KeyError::Parse)
    }

    /// The PKCS#8 DER in base64 on one line: the same key as [`Self::to_pem`]
    /// in the form an `.env` file can hold.
    pub fn to_one_line(&self) -> Result<SecretString, KeyError> {
        let der = self.0.to_pkcs8_der().map_err(|_| KeyError::Encode)?;
        Ok(SecretString::from(
            base64::engine::general_purpose::STANDARD.encode(der.as_bytes()),
        ))
    }

    /// PKCS#8 PEM, what `LOGIN_TOKEN_KEY` takes.
    pub fn to_pem(&self) -> Result<SecretString, KeyError> {
        let pem = self
            .0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|_| KeyError::Encode)?;
        Ok(SecretString::from(pem.as_str().to_owned()))
    }

    /// The 32-byte seed: what is stored, sealed.
    fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    fn from_seed(seed: &[u8]) -> Option<Self> {
        let seed: [u8; 32] = seed.try_into().ok()?;
        Some(Self(SigningKey::from_bytes(&seed)))
    }

    fn public_bytes(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    fn encoding_key(&self) -> Result<EncodingKey, KeyError> {
        let der = self.0.to_pkcs8_der().map_err(|_| KeyError::Encode)?;
        Ok(EncodingKey::from_ed_der(der.as_bytes()))
    }

    /// The RFC 7638 thumbprint of the public JWK: stable for a key, so every
    /// instance with the same key names it the same, and a new key gets a new kid.
    pub fn kid(&self) -> String {
        kid_of(&self.0.verifying_key())
    }

    /// The public key as a JWK (OKP, Ed25519).
    pub fn public_jwk(&self) -> Value {
        jwk_of(&self.0.verifying_key())
    }

    /// A stored public key's JWK, checked against its stored kid.
    fn public_from_bytes(kid: &str, bytes: &[u8]) -> Result<Value, KeyError> {
        let stored = || KeyError::Stored(kid.to_owned());
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| stored())?;
        let public = VerifyingKey::from_bytes(&bytes).map_err(|_| stored())?;
        if kid_of(&public) != kid {
            return Err(stored());
        }
        Ok(jwk_of(&public))
    }
}

/// The public key, base64url: a JWK's `x`.
fn x_of(public: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(public.as_bytes())
}

fn kid_of(public: &VerifyingKey) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, x_of(public));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn jwk_of(public: &VerifyingKey) -> Value {
    json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x_of(public),
        "kid": kid_of(public),
        "alg": "EdDSA",
        "use": "sig",
    })
}

/// Where the signing key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// `LOGIN_TOKEN_KEY`: it signs; stored keys are only published.
    Configured(LoginKey),
    /// The stored keys, opened with `WEBHOOK_SECRET_KEY`.
    Stored(WebhookSecretKeys),
}

/// Signs login tokens; serves the JWKS. Clones share one key set, which a
/// task reads again every [`KEY_REFRESH`].
#[derive(Clone)]
pub struct LoginTokens {
    keys: Arc<RwLock<Arc<KeySet>>>,
    issuer: String,
}

impl LoginTokens {
    /// Reads the stored keys (storing a first one if there is none and no
    /// key is configured) and starts refreshing them until `cancel`.
    pub async fn start(
        source: KeySource,
        issuer: String,
        pool: PgPool,
        cancel: CancellationToken,
    ) -> Result<Self, KeyError> {
        if let KeySource::Stored(sealing) = &source {
            store::ensure_key(&pool, sealing).await?;
        }
        let set = read(&source, &pool, None).await?;
        if let KeySource::Configured(key) = &source {
            tracing::info!(kid = %key.kid(), "login tokens are signed with LOGIN_TOKEN_KEY");
        }
        let tokens = Self {
            keys: Arc::new(RwLock::new(Arc::new(set))),
            issuer,
        };
        let refreshed = tokens.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(KEY_REFRESH) => {}
                }
                let current = refreshed.current();
                match read(&source, &pool, Some(&current)).await {
                    Ok(set) => refreshed.replace(set),
                    // The keys read last stay in use: they were valid then.
                    Err(error) => tracing::warn!(%error, "could not read the login-token keys again"),
                }
            }
        });
        Ok(tokens)
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            // A writer only swaps an Arc: a poisoned lock still holds a whole set.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, set: KeySet) {
        let mut keys = match self.keys.write() {
            Ok(keys) => keys,
            Err(poisoned) => poisoned.into_inner(),
        };
        *keys = Arc::new(set);
    }

    /// The end user's token after a `login` validation: one hour.
    pub fn sign(&self, validation: &ObjectId, client: &ObjectId, phone_e164: &str) -> Result<String, KeyError> {
        let now = Utc::now();
        let keys = self.current();
        let signer = keys.signer(now).ok_or(KeyError::NoKey)?;
        let claims = LoginClaims {
            sub: validation.to_string(),
            aud: client.to_string(),
            iss: self.issuer.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + LOGIN_TOKEN_SECONDS,
            phone: phone_e164.to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        Ok(encode(&header, &claims, &signer.encoding)?)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `{"keys": [<JWK>, ...]}`: every key a valid token may carry.
    pub fn jwks(&self) -> Arc<Value> {
        Arc::new(self.current().jwks(Utc::now()))
    }
}

/// One read of the stored keys, with the configured key if there is one.
async fn read(source: &KeySource, pool: &PgPool, reuse: Option<&KeySet>) -> Result<KeySet, KeyError> {
    let rows = store::load(pool).await?;
    let (configured, sealing) = match source {
        KeySource::Configured(key) => (Some(key), None),
        KeySource::Stored(sealing) => (None, Some(sealing)),
    };
    if configured.is_none() && rows.is_empty() {
        return Err(KeyError::NoKey);
    }
    KeySet::build(configured, rows, sealing, reuse, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    #[test]
    fn a_token_verifies_with_its_jwk_for_its_audience_only() {
        let key = LoginKey::generate();
        let again = LoginKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.kid(), key.kid());
        let one_line = key.to_one_line().unwrap();
        assert!(!one_line.expose_secret().contains('\n'));
        assert_eq!(LoginKey::from_pem(&one_line).unwrap().kid(), key.kid());
        let set = KeySet::build(Some(&again), Vec::new(), None, None, Utc::now()).unwrap();
        let tokens = LoginTokens {
            keys: Arc::new(RwLock::new(Arc::new(set))),
            issuer: "https://otp.example.com".into(),
        };
        let (validation, client) = (ObjectId::new(), ObjectId::new());
        let token = tokens.sign(&validation, &client, "+50762617737").unwrap();
        assert_eq!(decode_header(&token).unwrap().kid, Some(key.kid()));
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut check = Validation::new(Algorithm::EdDSA);
        check.set_audience(&[client.to_string()]);
        check.set_issuer(&["https://otp.example.com"]);
        let claims = decode::<LoginClaims>(&token, &decoding, &check).unwrap().claims;
        assert_eq!(claims.sub, validation.to_string());
        check.set_audience(&[ObjectId::new().to_string()]);
        assert!(decode::<LoginClaims>(&token, &decoding, &check).is_err());
        let other: jsonwebtoken::jwk::Jwk = serde_json::from_value(LoginKey::generate().public_jwk()).unwrap();
        check.set_audience(&[client.to_string()]);
        assert!(decode::<LoginClaims>(&token, &DecodingKey::from_jwk(&other).unwrap(), &check).is_err());
    }

    #[test]
    fn a_malformed_key_is_refused() {
        assert!(LoginKey::from_pem(&SecretString::from(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        ))
        .is_err());
        assert!(format!("{:?}", LoginKey::generate()).starts_with("LoginKey(kid "));
    }
}
