//! The dispatcher: consumes `otp.requested`, generates each code, stores only
//! its keyed bcrypt hash, sends it through the SMS or WhatsApp provider with
//! retries, and records the provider's confirmation (CONTRACT §6–7).
//! `Dispatcher::build` returns the process unstarted, so tests can run it
//! in-process with their own database, queues and provider stand-ins.

pub mod config;
pub mod hashing;
pub mod pipeline;
pub mod plan;
pub mod providers;
pub mod store;
pub mod text;

use anyhow::Context;
use config::DispatcherConfig;
use pipeline::Pipeline;
use shared::amqp::retry::DelayQueues;
use shared::amqp::Topology;
use shared::ops::Readiness;
use shared::otp::{CodeDeriver, OtpHasher};
use shared::process::{Messaging, Service};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the queue depths are sampled for `/metrics`.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    pipeline: Arc<Pipeline>,
    health: TcpListener,
    readiness: Readiness,
    prefetch: u16,
    cancel: CancellationToken,
    messaging: Messaging,
}

impl Service for Dispatcher {
    type Config = DispatcherConfig;
    const NAME: &'static str = "dispatcher";

    async fn build(config: DispatcherConfig, topology: Topology, cancel: CancellationToken) -> anyhow::Result<Self> {
        shared::ops::prometheus();
        let pool = shared::db::connect(&config.common.database_url, config.common.database_max_connections)
            .await
            .context("while connecting to PostgreSQL (DATABASE_URL)")?;
        let messaging = Messaging::start(
            &config.common,
            topology,
            "dispatcher",
            Some((pool.clone(), config.relay)),
        );
        let broker = messaging.broker.clone();
        let relay = messaging.relay.clone().context("the dispatcher's relay")?;
        let (sms, whatsapp) = providers::configured::build(&config)?;
        let health = TcpListener::bind(config.health_addr)
            .await
            .with_context(|| format!("while binding HEALTH_ADDR {}", config.health_addr))?;
        let pipeline = Arc::new(Pipeline {
            store: Store::start(pool.clone(), config.lease),
            broker: broker.clone(),
            relay,
            hashing: hashing::Hashing::start(
                OtpHasher::new(config.otp_pepper.clone(), config.bcrypt_cost),
                config.hash_concurrency,
            )
            .context("while starting the hashing threads")?,
            sms,
            whatsapp,
            inline_attempts: config.inline_retries.max(1),
            codes: CodeDeriver::new(config.otp_code_key.clone()),
            // A tier for waiting out another instance's lease too, so those
            // waits never queue behind a long provider-outage park.
            delays: DelayQueues::new(
                broker.topology().dispatch_queue(),
                &[config.retry_schedule.as_slice(), &[config.lease]].concat(),
            ),
            first_delay: config
                .retry_schedule
                .iter()
                .copied()
                .min()
                .unwrap_or(Duration::from_secs(5)),
        });
        Ok(Self {
            pipeline,
            health,
            readiness: Readiness {
                process: "dispatcher",
                pool,
                broker,
            },
            prefetch: config.prefetch,
            cancel,
            messaging,
        })
    }

    /// Consumes until cancelled, then finishes in-flight sends and returns.
    async fn run(self) -> anyhow::Result<()> {
        let broker = self.pipeline.broker.clone();
        let health = axum::serve(self.health, shared::ops::router(self.readiness.clone()))
            .with_graceful_shutdown(self.cancel.clone().cancelled_owned());
        let health = tokio::spawn(async move { health.await });

        let queue = self.pipeline.delays.queue().to_owned();
        let sampled = vec![queue.clone(), Topology::dead_letter_queue(&queue)];
        shared::ops::sample_queues(broker.clone(), sampled, QUEUE_SAMPLE_EVERY, self.cancel.clone());
        if self.pipeline.delays.declare_until_ready(&broker, &self.cancel).await {
            let pipeline = self.pipeline.clone();
            let queue = self.pipeline.delays.queue().to_owned();
            shared::amqp::consume(broker, queue, self.prefetch, self.cancel.clone(), move |delivery| {
                let pipeline = pipeline.clone();
                async move { pipeline.handle(delivery).await }
            })
            .await;
        }
        tracing::info!("dispatcher stopped consuming; publishing what is left");
        self.messaging.shutdown().await;
        let _ = health.await;
        Ok(())
    }
}

impl Dispatcher {
    pub fn health_addr(&self) -> std::io::Result<SocketAddr> {
        self.health.local_addr()
    }
}
