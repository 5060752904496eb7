//! `otpctl dlq`: list and replay dead-lettered messages (AMQP_URL, AMQP_PREFIX).

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use shared::amqp::{dlq, Topology};

#[derive(Subcommand)]
pub enum DlqCommand {
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
pub enum DlqQueue {
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

pub async fn run(command: DlqCommand) -> anyhow::Result<Value> {
    let (connection, channel, topology) = amqp().await?;
    let answer = match command {
        DlqCommand::List { queue, limit } => {
            let dlq_name = Topology::dead_letter_queue(&queue.work_queue(&topology));
            let messages = dlq::list(&channel, &dlq_name, limit)
                .await
                .with_context(|| format!("while listing {dlq_name}"))?;
            json!({"queue": dlq_name, "count": messages.len(), "messages": messages})
        }
        DlqCommand::Replay { queue, limit } => {
            let work_queue = queue.work_queue(&topology);
            let dlq_name = Topology::dead_letter_queue(&work_queue);
            let replayed = dlq::replay(&channel, &dlq_name, &work_queue, limit)
                .await
                .with_context(|| format!("while replaying {dlq_name} into {work_queue}"))?;
            json!({"queue": dlq_name, "to": work_queue, "replayed": replayed.len(), "messages": replayed})
        }
    };
    let _ = connection.close(200, "bye".into()).await;
    Ok(answer)
}

/// A channel on AMQP_URL and the queue names under AMQP_PREFIX.
async fn amqp() -> anyhow::Result<(lapin::Connection, lapin::Channel, Topology)> {
    let config = shared::config::CommonConfig::from_env(2)?;
    let connection = shared::amqp::connect_first(
        &config.amqp_url,
        lapin::ConnectionProperties::default().with_connection_name("otpctl".into()),
    )
    .await
    .context("while connecting to RabbitMQ (AMQP_URL)")?;
    let channel = connection.create_channel().await.context("while opening a channel")?;
    Ok((connection, channel, Topology::new(config.amqp_prefix)))
}
