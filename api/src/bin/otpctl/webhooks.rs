//! `otpctl webhooks endpoints --client ID` and `otpctl webhooks enable
//! --endpoint ID` (docs/contract.md §13): a client's webhook endpoints (no
//! secrets), and re-enabling one the worker disabled.

use anyhow::Context;
use api::store::webhook_endpoints;
use clap::Subcommand;
use serde_json::{json, Value};
use shared::ObjectId;

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List a client's webhook endpoints, newest first (no secrets).
    Endpoints {
        #[arg(long)]
        client: String,
    },
    /// Enable an endpoint again (clears its disabled reason and failure streak).
    Enable {
        #[arg(long)]
        endpoint: String,
    },
}

fn id(raw: &str, what: &str) -> anyhow::Result<ObjectId> {
    ObjectId::parse(raw)
        .ok()
        .with_context(|| format!("--{what} must be a 24-hex id, got {raw:?}"))
}

pub async fn run(command: WebhooksCommand) -> anyhow::Result<Value> {
    match command {
        WebhooksCommand::Endpoints { client } => {
            let client = id(&client, "client")?;
            let pool = super::pool().await?;
            let endpoints = webhook_endpoints::of_client(&pool, &client).await?;
            Ok(json!({"client": client, "endpoints": endpoints}))
        }
        WebhooksCommand::Enable { endpoint } => {
            let endpoint = id(&endpoint, "endpoint")?;
            let pool = super::pool().await?;
            let enabled = webhook_endpoints::enable(&pool, &endpoint).await?;
            let enabled = enabled.with_context(|| format!("no webhook endpoint {endpoint}"))?;
            Ok(json!({"endpoint": enabled}))
        }
    }
}
