//! How every process starts and stops. `main` reads the configuration,
//! builds the service, and runs it until SIGTERM or SIGINT; every service
//! stops in the same order: stop taking work (HTTP requests, deliveries),
//! finish what is in flight (including its parks and publishes), publish
//! what the outbox relay holds, and only then close the broker connection.

use crate::amqp::retry::DelayQueues;
use crate::amqp::{Broker, Delivery, Handled, Topology};
use crate::config::{CommonConfig, ConfigError};
use crate::ops::Readiness;
use crate::outbox::{Relay, RelayConfig};
use anyhow::Context;
use sqlx::PgPool;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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

/// Opens the database pool every process starts from.
pub async fn connect_database(common: &CommonConfig) -> anyhow::Result<PgPool> {
    crate::db::connect(&common.database_url, common.database_max_connections)
        .await
        .context("while connecting to PostgreSQL (DATABASE_URL)")
}

/// What a consuming worker does with one delivery of its queue.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery; what it returns settles it.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Handled> + Send;
    /// The work queue's delay tiers (the queue consumed is theirs).
    fn delays(&self) -> &DelayQueues;
}

/// How often a worker's queue depths are sampled for `/metrics`.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What a worker that consumes one queue runs besides its handler: the
/// health listener (`/health`, `/ready`, `/metrics`), the queue's delay
/// tiers declared until the broker takes them, the consumer, and the drain
/// in order. The dispatcher and the webhook worker both run this way.
pub struct Consumer {
    health: TcpListener,
    readiness: Readiness,
    prefetch: u16,
    cancel: CancellationToken,
    messaging: Messaging,
}

impl Consumer {
    /// Binds the health listener; `process` is the `process` label of `otp_ready`.
    pub async fn bind(
        process: &'static str,
        health_addr: SocketAddr,
        pool: PgPool,
        messaging: Messaging,
        prefetch: u16,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let health = TcpListener::bind(health_addr)
            .await
            .with_context(|| format!("while binding HEALTH_ADDR {health_addr}"))?;
        let readiness = Readiness {
            process,
            pool,
            broker: messaging.broker.clone(),
        };
        Ok(Self {
            health,
            readiness,
            prefetch,
            cancel,
            messaging,
        })
    }

    pub fn health_addr(&self) -> std::io::Result<SocketAddr> {
        self.health.local_addr()
    }

    /// Serves the health routes, samples the queue and its dead-letter
    /// queue, consumes the handler's work queue until the cancellation token
    /// fires, lets in-flight deliveries finish (or return to the queue), and
    /// only then closes the relay and the broker.
    pub async fn run<H: Handler>(self, handler: Arc<H>) -> anyhow::Result<()> {
        let delays = handler.delays();
        let cancel = self.cancel;
        let router = crate::ops::router(self.readiness.clone());
        let health = axum::serve(self.health, router).with_graceful_shutdown(cancel.clone().cancelled_owned());
        let health = tokio::spawn(health.into_future());
        let broker = self.messaging.broker.clone();
        let queue = delays.queue().to_owned();
        let sampled = vec![queue.clone(), Topology::dead_letter_queue(&queue)];
        crate::ops::sample_queues(broker.clone(), sampled, QUEUE_SAMPLE_EVERY, cancel.clone());
        if delays.declare_until_ready(&broker, &cancel).await {
            let consuming = handler.clone();
            crate::amqp::consume(broker, queue, self.prefetch, cancel.clone(), move |delivery| {
                let handler = consuming.clone();
                async move { handler.handle(delivery).await }
            })
            .await;
        }
        let process = self.readiness.process;
        tracing::info!("{process} stopped consuming; publishing what is left");
        self.messaging.shutdown().await;
        tracing::info!("{process} stopped");
        health.await.context("the health server panicked")??;
        Ok(())
    }
}
