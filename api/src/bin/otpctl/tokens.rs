//! `otpctl token`: client tokens.

use crate::{jwt, pool};
use anyhow::Context;
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
}

pub async fn run(command: TokenCommand) -> anyhow::Result<Value> {
    match command {
        TokenCommand::Create {
            client,
            expires_in_days,
        } => create(&client, expires_in_days).await,
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
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)")
        .bind(&id)
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(exists, "no client {id}");
    Ok(json!({"token": jwt.client_token(&id, expires_in_days)?}))
}
