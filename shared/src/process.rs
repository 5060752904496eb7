//! How every process starts and stops. `main` reads the configuration,
//! builds the service, and runs it until SIGTERM or SIGINT; every service
//! stops in the same order: stop taking work (HTTP requests, deliveries),
//! finish what is in flight (including its parks and publishes), publish
//! what the outbox relay holds, and only then close the broker connection.

use crate::amqp::{Broker, Topology};
use crate::config::{CommonConfig, ConfigError};
use crate::outbox::{Relay, RelayConfig};
use anyhow::Context;
use sqlx::PgPool;
use std::future::Future;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A process's configuration: one struct, read once from the environment.
pub trait Config: Sized {
    fn from_env() -> Result<Self, ConfigError>;
    /// The settings every process shares.
    fn common(&self) -> &CommonConfig;
}

/// One of the service's processes. `build` returns it unstarted, so tests
/// can run it in-process on port 0 with their own database and queues.
pub trait Service: Sized {
    type Config: Config;
    /// For messages: "API", "dispatcher", "webhook worker".
    const NAME: &'static str;

    /// Connects and binds; `cancel` is what stops it.
    fn build(
        config: Self::Config,
        topology: Topology,
        cancel: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<Self>>;
    /// Runs until `cancel` fires, then shuts down in order.
    fn run(self) -> impl Future<Output = anyhow::Result<()>>;
}

/// The body of every `main`.
pub async fn main<S: Service>() -> anyhow::Result<()> {
    crate::config::load_dotenv();
    crate::telemetry::init();
    let config = S::Config::from_env().context("while reading the configuration")?;
    let topology = Topology::new(config.common().amqp_prefix.clone());
    let cancel = CancellationToken::new();
    let service = S::build(config, topology, cancel.clone())
        .await
        .with_context(|| format!("while starting the {}", S::NAME))?;
    tokio::spawn(crate::telemetry::shutdown_signal(cancel));
    service
        .run()
        .await
        .with_context(|| format!("while running the {}", S::NAME))
}

/// A process's broker connection and, if it writes events, its outbox
/// relay, with their own stop tokens: they outlive the work they serve.
pub struct Messaging {
    pub broker: Broker,
    pub relay: Option<Relay>,
    relay_tasks: Vec<JoinHandle<()>>,
    relay_stop: CancellationToken,
    broker_stop: CancellationToken,
}

impl Messaging {
    /// Starts the broker supervisor, and the relay when `outbox` is given.
    pub fn start(common: &CommonConfig, topology: Topology, name: &str, outbox: Option<(PgPool, RelayConfig)>) -> Self {
        let broker_stop = CancellationToken::new();
        let broker = Broker::start(common.amqp_url.clone(), topology, name, broker_stop.clone());
        let relay_stop = CancellationToken::new();
        let (relay, relay_tasks) = match outbox {
            Some((pool, config)) => {
                let (relay, tasks) = Relay::start(pool, broker.clone(), config, relay_stop.clone());
                (Some(relay), tasks)
            }
            None => (None, Vec::new()),
        };
        Self {
            broker,
            relay,
            relay_tasks,
            relay_stop,
            broker_stop,
        }
    }

    /// After the process has finished its work: lets the relay publish what
    /// it holds, then closes the broker connection.
    pub async fn shutdown(self) {
        self.relay_stop.cancel();
        for task in self.relay_tasks {
            let _ = task.await;
        }
        self.broker_stop.cancel();
        self.broker.wait_closed().await;
        tracing::info!("broker connection closed");
    }
}
