//! `otpctl client`: API clients and their webhook signing secrets (stored
//! sealed with `WEBHOOK_SECRET_KEY`; printed once, in the clear, to hand over).

use crate::{jwt, pool};
use anyhow::Context;
use api::store::clients;
use base64::Engine;
use clap::Subcommand;
use rand::RngCore;
use serde_json::{json, Value};
use shared::webhook_secrets::WebhookSecretKeys;
use shared::ObjectId;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create a client with a token and a webhook signing secret.
    Create {
        #[arg(long)]
        name: String,
    },
    /// Issue a new webhook secret; the old one keeps signing for 24 hours.
    RotateSecret {
        #[arg(long)]
        client: String,
    },
}

pub async fn run(command: ClientCommand) -> anyhow::Result<Value> {
    match command {
        ClientCommand::Create { name } => create(name).await,
        ClientCommand::RotateSecret { client } => rotate_secret(&client).await,
    }
}

/// `whsec_` + base64 of 24 random bytes, as Standard Webhooks secrets are written.
fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn create(name: String) -> anyhow::Result<Value> {
    let name = name.trim().to_owned();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 200,
        "--name must be 1 to 200 characters"
    );
    let jwt = jwt()?;
    let sealing = WebhookSecretKeys::from_env()?;
    let pool = pool().await?;
    let id = ObjectId::new();
    let secret = new_webhook_secret();
    clients::insert(&pool, &id, &name, &sealing.seal(&id.to_string(), &secret)?)
        .await
        .context("while creating the client")?;
    let token = jwt.client_token(&id, 0, 365)?;
    Ok(json!({"_id": id, "name": name, "token": token, "webhookSecret": secret}))
}

async fn rotate_secret(client: &str) -> anyhow::Result<Value> {
    let id = ObjectId::parse(client).context("--client must be a 24-hex client id")?;
    let sealing = WebhookSecretKeys::from_env()?;
    let pool = pool().await?;
    let secret = new_webhook_secret();
    let updated = clients::rotate_secret(&pool, &id, &sealing.seal(&id.to_string(), &secret)?).await?;
    anyhow::ensure!(updated, "no client {id}");
    Ok(json!({"_id": id, "webhookSecret": secret, "previousSecretValidForHours": 24}))
}
