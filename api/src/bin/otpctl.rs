//! `otpctl`: the operator's CLI. Prints one JSON object on stdout; errors go
//! to stderr with a non-zero exit.

use anyhow::Context;
use api::auth::Jwt;
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use rand::RngCore;
use secrecy::ExposeSecret;
use shared::amqp::{dlq, Topology};
use shared::ObjectId;
use sqlx::PgPool;

#[derive(Parser)]
#[command(
    name = "otpctl",
    about = "Operate the OTP service: migrations, clients, tokens, dead letters"
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
        command: ClientCommand,
    },
    /// Issue API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Inspect and replay dead-lettered messages (AMQP_URL, AMQP_PREFIX).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print up to --limit dead-lettered messages, leaving them in place.
    List {
        #[arg(long, value_enum)]
        queue: DlqQueue,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Move up to --limit dead-lettered messages back to the work queue with a fresh retry schedule.
    Replay {
        #[arg(long, value_enum)]
        queue: DlqQueue,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Which work queue's dead letters.
#[derive(Clone, Copy, ValueEnum)]
enum DlqQueue {
    /// `otp.webhooks.dlq`: webhook events whose retries ran out.
    Webhooks,
    /// `otp.dispatch.dlq`: code sends the dispatcher gave up on.
    Dispatch,
}

impl DlqQueue {
    fn work_queue(self, topology: &Topology) -> String {
        match self {
            DlqQueue::Webhooks => topology.webhook_queue(),
            DlqQueue::Dispatch => topology.dispatch_queue(),
        }
    }
}

/// A channel on AMQP_URL and the queue names under AMQP_PREFIX.
async fn amqp() -> anyhow::Result<(lapin::Connection, lapin::Channel, Topology)> {
    let config = shared::config::CommonConfig::from_env(2)?;
    let connection = lapin::Connection::connect(
        config.amqp_url.expose_secret(),
        lapin::ConnectionProperties::default().with_connection_name("otpctl".into()),
    )
    .await
    .context("while connecting to RabbitMQ (AMQP_URL)")?;
    let channel = connection.create_channel().await.context("while opening a channel")?;
    Ok((connection, channel, Topology::new(config.amqp_prefix)))
}

#[derive(Subcommand)]
enum ClientCommand {
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

#[derive(Subcommand)]
enum TokenCommand {
    /// A new token for an existing client.
    Create {
        #[arg(long)]
        client: String,
        #[arg(long, default_value_t = 365)]
        expires_in_days: i64,
    },
}

#[tokio::main]
async fn main() {
    shared::config::load_dotenv();
    match run(Cli::parse()).await {
        Ok(output) => println!("{output}"),
        Err(error) => {
            eprintln!("otpctl: {error:#}");
            std::process::exit(1);
        }
    }
}

async fn pool() -> anyhow::Result<PgPool> {
    let config = shared::config::CommonConfig::from_env(2)?;
    shared::db::connect(&config.database_url, 2)
        .await
        .context("while connecting to PostgreSQL (DATABASE_URL)")
}

fn jwt() -> anyhow::Result<Jwt> {
    Ok(Jwt::new(&shared::config::secret("JWT_SECRET")?))
}

/// `whsec_` + base64 of 24 random bytes, as Standard Webhooks secrets are written.
fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn run(cli: Cli) -> anyhow::Result<serde_json::Value> {
    match cli.command {
        Command::Migrate => {
            let pool = pool().await?;
            shared::db::MIGRATOR
                .run(&pool)
                .await
                .context("while applying migrations")?;
            let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await?;
            Ok(serde_json::json!({"migrated": true, "applied": applied}))
        }
        Command::Client {
            command: ClientCommand::Create { name },
        } => {
            let name = name.trim().to_owned();
            anyhow::ensure!(
                !name.is_empty() && name.chars().count() <= 200,
                "--name must be 1 to 200 characters"
            );
            let jwt = jwt()?;
            let pool = pool().await?;
            let id = ObjectId::new();
            let secret = new_webhook_secret();
            sqlx::query("INSERT INTO clients (id, name, webhook_secret) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(&name)
                .bind(&secret)
                .execute(&pool)
                .await
                .context("while creating the client")?;
            let token = jwt.client_token(&id, 365)?;
            Ok(serde_json::json!({"_id": id, "name": name, "token": token, "webhookSecret": secret}))
        }
        Command::Client {
            command: ClientCommand::RotateSecret { client },
        } => {
            let id = ObjectId::parse(&client).context("--client must be a 24-hex client id")?;
            let pool = pool().await?;
            let secret = new_webhook_secret();
            let updated = sqlx::query(
                "UPDATE clients SET previous_webhook_secret = webhook_secret,
                        previous_webhook_secret_expires_at = now() + interval '24 hours',
                        webhook_secret = $2, updated_at = now()
                  WHERE id = $1",
            )
            .bind(&id)
            .bind(&secret)
            .execute(&pool)
            .await?;
            anyhow::ensure!(updated.rows_affected() == 1, "no client {id}");
            Ok(serde_json::json!({"_id": id, "webhookSecret": secret, "previousSecretValidForHours": 24}))
        }
        Command::Token {
            command: TokenCommand::Create {
                client,
                expires_in_days,
            },
        } => {
            anyhow::ensure!(
                (1..=3650).contains(&expires_in_days),
                "--expires-in-days must be 1 to 3650"
            );
            let id = ObjectId::parse(&client).context("--client must be a 24-hex client id")?;
            let jwt = jwt()?;
            let pool = pool().await?;
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)")
                .bind(&id)
                .fetch_one(&pool)
                .await?;
            anyhow::ensure!(exists, "no client {id}");
            Ok(serde_json::json!({"token": jwt.client_token(&id, expires_in_days)?}))
        }
        Command::Dlq {
            command: DlqCommand::List { queue, limit },
        } => {
            let (connection, channel, topology) = amqp().await?;
            let dlq_name = Topology::dead_letter_queue(&queue.work_queue(&topology));
            let messages = dlq::list(&channel, &dlq_name, limit)
                .await
                .with_context(|| format!("while listing {dlq_name}"))?;
            let _ = connection.close(200, "bye".into()).await;
            Ok(serde_json::json!({"queue": dlq_name, "count": messages.len(), "messages": messages}))
        }
        Command::Dlq {
            command: DlqCommand::Replay { queue, limit },
        } => {
            let (connection, channel, topology) = amqp().await?;
            let work_queue = queue.work_queue(&topology);
            let dlq_name = Topology::dead_letter_queue(&work_queue);
            let replayed = dlq::replay(&channel, &dlq_name, &work_queue, limit)
                .await
                .with_context(|| format!("while replaying {dlq_name} into {work_queue}"))?;
            let _ = connection.close(200, "bye".into()).await;
            Ok(
                serde_json::json!({"queue": dlq_name, "to": work_queue, "replayed": replayed.len(), "messages": replayed}),
            )
        }
    }
}
