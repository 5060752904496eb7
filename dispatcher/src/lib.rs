//! The dispatcher: consumes `otp.requested`, generates each code, stores only
//! its keyed bcrypt hash, sends it through the SMS or WhatsApp provider with
//! retries, and records the provider's confirmation (docs/contract.md §6–7).
//! `Dispatcher::build` returns the process unstarted, so tests can run it
//! in-process with their own database, queues and provider stand-ins.

pub mod config;
pub mod expiry;
pub mod hashing;
pub mod pipeline;
pub mod plan;
pub mod providers;
pub mod receipts;
pub mod store;
pub mod text;

use anyhow::Context;
use config::DispatcherConfig;
use pipeline::Pipeline;
use shared::amqp::retry::DelayQueues;
use shared::amqp::Topology;
use shared::otp::{CodeDeriver, OtpHasher};
use shared::process::{Consumer, Messaging, Service};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio_util::sync::CancellationToken;

pub struct Dispatcher {
    pipeline: Arc<Pipeline>,
    consumer: Consumer,
    /// The sweep of delivery receipts kept before their send was recorded.
    receipts: receipts::Sweep,
    /// The sweep that fails open validations past their expiry.
    expiry: expiry::Sweep,
}

impl Service for Dispatcher {
    type Config = DispatcherConfig;
    const NAME: &'static str = "dispatcher";

    async fn build(config: DispatcherConfig, topology: Topology, cancel: CancellationToken) -> anyhow::Result<Self> {
        shared::ops::prometheus();
        let pool = shared::process::connect_database(&config.common).await?;
        let messaging = Messaging::start(
            &config.common,
            topology,
            "dispatcher",
            Some((pool.clone(), config.relay)),
        );
        let broker = messaging.broker.clone();
        let relay = messaging.relay.clone().context("the dispatcher's relay")?;
        let providers::configured::Providers { sms, whatsapp, voice } = providers::configured::build(&config)?;
        let consumer = Consumer::bind(
            "dispatcher",
            config.health_addr,
            pool.clone(),
            messaging,
            config.prefetch,
            cancel.clone(),
        )
        .await?;
        let pipeline = Arc::new(Pipeline {
            store: Store::start(pool.clone(), config.lease, relay.clone()),
            broker: broker.clone(),
            relay,
            hashing: hashing::Hashing::start(
                OtpHasher::new(config.otp_pepper.clone(), config.bcrypt_cost),
                config.hash_concurrency,
            )
            .context("while starting the hashing threads")?,
            sms,
            whatsapp,
            voice,
            inline_attempts: config.inline_retries.max(1),
            codes: CodeDeriver::new(config.otp_code_key.clone()),
            // A tier for waiting out another instance's lease too, so those
            // waits never queue behind a long provider-outage park.
            delays: DelayQueues::new(
                broker.topology().dispatch_queue(),
                &[
                    config.retry_schedule.as_slice(),
                    &[config.lease],
                    pipeline::CHANNEL_TIMEOUT_TIERS,
                ]
                .concat(),
            ),
            first_delay: config
                .retry_schedule
                .iter()
                .copied()
                .min()
                .unwrap_or(Duration::from_secs(5)),
            guard: config.fraud_guard,
        });
        let expiry = expiry::Sweep {
            pool: pool.clone(),
            relay: pipeline.relay.clone(),
            every: config.expiry_sweep,
            batch: config.expiry_batch,
            cancel: cancel.clone(),
        };
        let receipts = receipts::Sweep {
            pool,
            relay: pipeline.relay.clone(),
            every: config.receipt_sweep,
            cancel: cancel.clone(),
        };
        Ok(Self {
            pipeline,
            consumer,
            receipts,
            expiry,
        })
    }

    /// Consumes until cancelled, then finishes in-flight sends and returns.
    async fn run(self) -> anyhow::Result<()> {
        self.receipts.spawn();
        self.expiry.spawn();
        self.consumer.run(self.pipeline).await
    }
}

impl Dispatcher {
    pub fn health_addr(&self) -> std::io::Result<SocketAddr> {
        self.consumer.health_addr()
    }
}
