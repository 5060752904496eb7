//! The end user's login token: an EdDSA (Ed25519) JWT with
//! a key of its own, never `JWT_SECRET`, so a client verifies it with the
//! public key served at `GET /.well-known/jwks.json` and holds no secret that
//! could mint client tokens. `aud` is the client's id, `iss` the issuer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::ObjectId;
use std::sync::Arc;

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

/// The Ed25519 private key (`LOGIN_TOKEN_KEY`, PKCS#8 PEM).
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

    /// The public key, base64url: a JWK's `x`.
    fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.verifying_key().as_bytes())
    }

    /// The RFC 7638 thumbprint of the public JWK: stable for a key, so every
    /// instance with the same key names it the same, and a new key gets a new kid.
    pub fn kid(&self) -> String {
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.x());
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public key as a JWK (OKP, Ed25519).
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x(),
            "kid": self.kid(),
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// Signs login tokens; serves the JWKS.
#[derive(Clone)]
pub struct LoginTokens {
    encoding: Arc<EncodingKey>,
    kid: String,
    issuer: String,
    jwks: Arc<Value>,
}

impl LoginTokens {
    pub fn new(key: &LoginKey, issuer: String) -> Result<Self, KeyError> {
        let der = key.0.to_pkcs8_der().map_err(|_| KeyError::Encode)?;
        Ok(Self {
            encoding: Arc::new(EncodingKey::from_ed_der(der.as_bytes())),
            kid: key.kid(),
            issuer,
            jwks: Arc::new(json!({"keys": [key.public_jwk()]})),
        })
    }

    /// The end user's token after a `login` validation: one hour.
    pub fn sign(
        &self,
        validation: &ObjectId,
        client: &ObjectId,
        phone_e164: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = LoginClaims {
            sub: validation.to_string(),
            aud: client.to_string(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now + LOGIN_TOKEN_SECONDS,
            phone: phone_e164.to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        encode(&header, &claims, &self.encoding)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `{"keys": [<JWK>]}`.
    pub fn jwks(&self) -> Arc<Value> {
        self.jwks.clone()
    }
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
        let tokens = LoginTokens::new(&again, "https://otp.example.com".into()).unwrap();
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
