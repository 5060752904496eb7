//! `webhook-worker`: delivers validation events to clients' webhooks.

use anyhow::Context;
use shared::amqp::Topology;
use tokio_util::sync::CancellationToken;
use webhook_worker::config::WebhookConfig;
use webhook_worker::WebhookWorker;

/// mimalloc: the services allocate many small, short-lived buffers per request
/// and message, where it is markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::config::load_dotenv();
    shared::telemetry::init();
    let config = WebhookConfig::from_env().context("while reading the configuration")?;
    let topology = Topology::new(config.common.amqp_prefix.clone());
    let cancel = CancellationToken::new();
    let worker = WebhookWorker::build(config, topology, cancel.clone())
        .await
        .context("while starting the webhook worker")?;
    tracing::info!(health = %worker.health_addr().context("while reading HEALTH_ADDR")?, "webhook worker starting");
    tokio::spawn(shared::telemetry::shutdown_signal(cancel));
    worker.run().await.context("while running the webhook worker")
}
