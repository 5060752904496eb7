//! `otpctl keys`: signing keys for end users' login tokens.

use api::login_token::LoginKey;
use clap::Subcommand;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// A new Ed25519 key for LOGIN_TOKEN_KEY: PKCS#8 PEM in `privateKeyPem`
    /// (for LOGIN_TOKEN_KEY_FILE), the same key on one line in `privateKey`
    /// (for an .env file), its kid and public JWK. Nothing is stored.
    Generate,
}

pub fn run(command: KeysCommand) -> anyhow::Result<Value> {
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
    }
}
