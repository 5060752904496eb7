//! `otpctl`: the operator's CLI. Prints one JSON object on stdout; errors go
//! to stderr with a non-zero exit.

mod clients;
mod dlq;
mod fraud;
mod keys;
mod tokens;
mod webhooks;

use anyhow::Context;
use api::auth::Jwt;
use clap::{Parser, Subcommand};
use sqlx::PgPool;

#[derive(Parser)]
#[command(
    name = "otpctl",
    about = "Operate the OTP service: migrations, clients, tokens, keys, dead letters, fraud-guard blocks, webhook endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations (idempotent).
    Migrate,
    /// Manage API clients.
    Client {
        #[command(subcommand)]
        command: clients::ClientCommand,
    },
    /// Issue and revoke API tokens.
    Token {
        #[command(subcommand)]
        command: tokens::TokenCommand,
    },
    /// Signing keys for end users' login tokens.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Inspect and replay dead-lettered messages (AMQP_URL, AMQP_PREFIX).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// The fraud guard's blocks: list and lift.
    Fraud {
        #[command(subcommand)]
        command: fraud::FraudCommand,
    },
    /// Clients' webhook endpoints: list and re-enable.
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
}

#[tokio::main]
async fn main() {
    shared::config::load_dotenv();
    let result = match Cli::parse().command {
        Command::Migrate => migrate().await,
        Command::Client { command } => clients::run(command).await,
        Command::Token { command } => tokens::run(command).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Dlq { command } => dlq::run(command).await,
        Command::Fraud { command } => fraud::run(command).await,
        Command::Webhooks { command } => webhooks::run(command).await,
    };
    match result {
        Ok(output) => println!("{output}"),
        Err(error) => {
            eprintln!("otpctl: {error:#}");
            std::process::exit(1);
        }
    }
}

/// DATABASE_URL's pool, small: one command at a time.
async fn pool() -> anyhow::Result<PgPool> {
    let config = shared::config::CommonConfig::from_env(2)?;
    shared::db::connect(&config.database_url, 2)
        .await
        .context("while connecting to PostgreSQL (DATABASE_URL)")
}

fn jwt() -> anyhow::Result<Jwt> {
    Ok(Jwt::new(&shared::config::key("JWT_SECRET")?))
}

async fn migrate() -> anyhow::Result<serde_json::Value> {
    let pool = pool().await?;
    shared::db::MIGRATOR
        .run(&pool)
        .await
        .context("while applying migrations")?;
    let applied = api::store::clients::migrations_applied(&pool).await?;
    Ok(serde_json::json!({"migrated": true, "applied": applied}))
}
