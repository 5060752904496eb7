//! Bearer tokens: HS256 JWTs. Client tokens (`aud` `otp-client`, `sub` the
//! client id) authorise `/v2`; login tokens (`aud` `otp-login`, `sub` the
//! validation id) are handed to end users and can never pass as a client's.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shared::ObjectId;

const CLIENT_AUDIENCE: &str = "otp-client";
const LOGIN_AUDIENCE: &str = "otp-login";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

/// Signs and checks tokens with `JWT_SECRET`.
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

    fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// A client token valid for `days`.
    pub fn client_token(&self, client: &ObjectId, days: i64) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        self.sign(&Claims {
            sub: client.to_string(),
            aud: CLIENT_AUDIENCE.into(),
            iat: now,
            exp: now + days * 86_400,
            phone: None,
        })
    }

    /// The end user's token after a `login` validation: one hour.
    pub fn login_token(&self, validation: &ObjectId, phone_e164: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        self.sign(&Claims {
            sub: validation.to_string(),
            aud: LOGIN_AUDIENCE.into(),
            iat: now,
            exp: now + 3600,
            phone: Some(phone_e164.to_owned()),
        })
    }

    /// The client a bearer token names, if it is valid and unexpired.
    pub fn verify_client(&self, token: &str) -> Option<ObjectId> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[CLIENT_AUDIENCE]);
        validation.leeway = 0;
        let data = decode::<Claims>(token, &self.decoding, &validation).ok()?;
        ObjectId::parse(&data.claims.sub).ok()
    }
}

/// The authenticated client of a `/v2` request.
pub struct AuthClient(pub ObjectId);

impl FromRequestParts<AppState> for AuthClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let client = state
            .jwt
            .verify_client(token.trim())
            .ok_or_else(ApiError::unauthorized)?;
        Ok(AuthClient(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_tokens_are_not_client_tokens() {
        let jwt = Jwt::new(&SecretString::from("secret"));
        let id = ObjectId::new();
        let client = jwt.client_token(&id, 1).unwrap();
        assert_eq!(jwt.verify_client(&client), Some(id.clone()));
        let login = jwt.login_token(&id, "+50762617737").unwrap();
        assert_eq!(jwt.verify_client(&login), None);
        let other = Jwt::new(&SecretString::from("other"));
        assert_eq!(other.verify_client(&client), None);
        let expired = jwt.client_token(&id, -1).unwrap();
        assert_eq!(jwt.verify_client(&expired), None);
    }
}
