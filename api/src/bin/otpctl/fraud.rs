//! `otpctl fraud blocks [--client ID]` and `otpctl fraud unblock --client ID
//! --prefix P` (docs/contract.md §9): the fraud guard's active blocks, and lifting one.

use anyhow::Context;
use api::fraud::blocks;
use clap::Subcommand;
use shared::ObjectId;

#[derive(Subcommand)]
pub enum FraudCommand {
    /// List the active blocks (of one client, or of all).
    Blocks {
        #[arg(long)]
        client: Option<String>,
    },
    /// Lift a client's block of a prefix (e.g. `+507626`).
    Unblock {
        #[arg(long)]
        client: String,
        #[arg(long)]
        prefix: String,
    },
}

pub async fn run(command: FraudCommand) -> anyhow::Result<serde_json::Value> {
    let pool = super::pool().await?;
    let client_id = |raw: &str| {
        ObjectId::parse(raw)
            .ok()
            .with_context(|| format!("not a client id: {raw:?}"))
    };
    match command {
        FraudCommand::Blocks { client } => {
            let client = client.as_deref().map(client_id).transpose()?;
            let active = blocks::active(&pool, client.as_ref()).await?;
            let listed: Vec<serde_json::Value> = active
                .into_iter()
                .map(|(client, block)| {
                    let mut value = serde_json::to_value(block).unwrap_or_default();
                    value["client"] = serde_json::Value::String(client.to_string());
                    value
                })
                .collect();
            Ok(serde_json::json!({ "blocks": listed }))
        }
        FraudCommand::Unblock { client, prefix } => {
            let client = client_id(&client)?;
            if !blocks::lift(&pool, &client, prefix.trim()).await? {
                anyhow::bail!("client {client} has no active block of {prefix}");
            }
            Ok(serde_json::json!({ "client": client.to_string(), "prefix": prefix.trim(), "lifted": true }))
        }
    }
}
