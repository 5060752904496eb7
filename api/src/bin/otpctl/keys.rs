//! `otpctl keys`: signing keys for end users' login tokens.

use anyhow::Context;
use api::login_token::{store, LoginKey};
use clap::Subcommand;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use shared::webhook_secrets::WebhookSecretKeys;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// A new Ed25519 key for LOGIN_TOKEN_KEY: PKCS#8 PEM in `privateKeyPem`
    /// (for LOGIN_TOKEN_KEY_FILE), the same key on one line in `privateKey`
    /// (for an .env file), its kid and public JWK. Nothing is stored.
    Generate,
    /// Replaces the stored login-token key (DATABASE_URL; sealed with
    /// WEBHOOK_SECRET_KEY): the new key is published at once and signs from
    /// `signsFrom` (5 min 10 s later, once every API instance and every
    /// client's cached JWKS has it); the
    /// previous key stays published until `previousPublishedUntil`, when its
    /// last tokens have expired. API instances with LOGIN_TOKEN_KEY set keep
    /// signing with it.
    Rotate,
}

pub async fn run(command: KeysCommand) -> anyhow::Result<Value> {
    match command {
        KeysCommand::Generate => {
            let key = LoginKey::generate();
            let pem = key.to_pem()?;
            let one_line = key.to_one_line()?;
            Ok(json!({
                "kid": key.kid(),
                "privateKeyPem": pem.expose_secret(),
                "privateKey": one_line.expose_secret(),
                "publicJwk": key.public_jwk(),
            }))
        }
        KeysCommand::Rotate => {
            let sealing = WebhookSecretKeys::from_env()?;
            let pool = crate::pool().await?;
            let rotated = store::rotate(&pool, &sealing)
                .await
                .context("while rotating the login-token key")?;
            Ok(serde_json::to_value(rotated)?)
        }
    }
}
