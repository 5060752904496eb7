//! `otpctl token`: client tokens, and revoking them.

use crate::{jwt, pool};
use anyhow::Context;
use api::store::clients;
use clap::Subcommand;
use serde_json::{json, Value};
use shared::ObjectId;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// A new token for an existing client.
    Create {
        #[arg(long)]
        client: String,
        #[arg(long, default_value_t = 365)]
        expires_in_days: i64,
    },
    /// Revoke every token the client has: its token version goes up, and the
    /// API refuses older tokens within seconds. Issue new ones with `token create`.
    Revoke {
        #[arg(long)]
        client: String,
    },
}

pub async fn run(command: TokenCommand) -> anyhow::Result<Value> {
    match command {
        TokenCommand::Create {
            client,
            expires_in_days,
        } => create(&client, expires_in_days).await,
        TokenCommand::Revoke { client } => revoke(&client).await,
    }
}

async fn create(client: &str, expires_in_days: i64) -> anyhow::Result<Value> {
    anyhow::ensure!(
        (1..=3650).contains(&expires_in_days),
        "--expires-in-days must be 1 to 3650"
    );
    let id = ObjectId::parse(client).context("--client must be a 24-hex client id")?;
    let jwt = jwt()?;
    let pool = pool().await?;
    let version = clients::token_version(&pool, &id).await?;
    let version = version.with_context(|| format!("no client {id}"))?;
    Ok(json!({"token": jwt.client_token(&id, version, expires_in_days)?}))
}

async fn revoke(client: &str) -> anyhow::Result<Value> {
    let id = ObjectId::parse(client).context("--client must be a 24-hex client id")?;
    let pool = pool().await?;
    let version = clients::revoke_tokens(&pool, &id).await?;
    let version = version.with_context(|| format!("no client {id}"))?;
    Ok(json!({"_id": id, "revoked": true, "tokenVersion": version}))
}
