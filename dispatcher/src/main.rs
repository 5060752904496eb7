use anyhow::Context;
use dispatcher::config::DispatcherConfig;
use dispatcher::Dispatcher;
use shared::amqp::Topology;
use tokio_util::sync::CancellationToken;

/// mimalloc: the services allocate many small, short-lived buffers per request
/// and message, where it is markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::config::load_dotenv();
    shared::telemetry::init();
    let config = DispatcherConfig::from_env().context("while reading the configuration")?;
    let topology = Topology::new(config.common.amqp_prefix.clone());
    let cancel = CancellationToken::new();
    let dispatcher = Dispatcher::build(config, topology, cancel.clone()).await?;
    tokio::spawn(shared::telemetry::shutdown_signal(cancel));
    dispatcher.run().await
}
