//! The webhook worker (CONTRACT §8): consumes `phone_validation.validated` and
//! `phone_validation.failed` and delivers each, signed per Standard Webhooks,
//! to the client's webhook URL, retrying through delay queues until it is
//! delivered, refused or dead-lettered. `build` returns the worker unstarted,
//! so tests run it in-process with their own database and queue names.

pub mod config;
pub mod deliver;
pub use shared::amqp::dlq;
pub mod hosts;
pub mod message;
pub mod policy;
pub mod records;
pub mod sender;
pub mod signing;
pub mod ssrf;

use config::WebhookConfig;
use deliver::Deliverer;
use hosts::HostLimiter;
use policy::RetryPolicy;
use records::TargetCache;
use sender::Sender;
use shared::amqp::retry::DelayQueues;
use shared::amqp::{Broker, Topology};
use shared::ops::Readiness;
use sqlx::PgPool;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long a client's keys and a flow's URL are reused before reloading.
const TARGET_CACHE_TTL: Duration = Duration::from_secs(2);

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot connect to PostgreSQL (DATABASE_URL)")]
    Database(#[from] sqlx::Error),
    #[error("cannot bind HEALTH_ADDR {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client")]
    Http(#[from] reqwest::Error),
}

/// A built, bound, not yet running worker.
pub struct WebhookWorker {
    deliverer: Arc<Deliverer>,
    health: TcpListener,
    readiness: Readiness,
    prefetch: u16,
    cancel: CancellationToken,
    broker_stop: DropGuard,
}

impl WebhookWorker {
    /// Connects to the database, starts the broker supervisor and binds the
    /// health listener. `topology` names the queues.
    pub async fn build(
        config: WebhookConfig,
        topology: Topology,
        cancel: CancellationToken,
    ) -> Result<Self, BuildError> {
        let pool = shared::db::connect(&config.common.database_url, config.common.database_max_connections).await?;
        let queue = topology.webhook_queue();
        // The broker outlives the consumer's drain (in-flight deliveries still
        // publish retries and ack): it stops when `run` ends or the worker is dropped.
        let broker_cancel = CancellationToken::new();
        let broker = Broker::start(
            config.common.amqp_url.clone(),
            topology,
            "webhook-worker",
            broker_cancel.clone(),
        );
        let health = TcpListener::bind(config.health_addr)
            .await
            .map_err(|source| BuildError::Bind {
                addr: config.health_addr,
                source,
            })?;
        shared::ops::prometheus();
        if config.allow_private {
            tracing::warn!("WEBHOOK_ALLOW_PRIVATE is on: webhooks may reach loopback and private addresses");
        }
        let deliverer = Deliverer {
            pool: pool.clone(),
            broker: broker.clone(),
            delays: DelayQueues::new(queue, &config.retry_schedule),
            policy: RetryPolicy::new(config.retry_schedule.clone()),
            sender: Sender::new(config.timeout, config.allow_private, config.per_host_concurrency)?,
            hosts: HostLimiter::new(config.per_host_concurrency, config.host_wait),
            targets: TargetCache::new(TARGET_CACHE_TTL),
            allow_private: config.allow_private,
            stale_after: config.timeout + Duration::from_secs(60),
        };
        Ok(Self {
            deliverer: Arc::new(deliverer),
            health,
            readiness: Readiness { pool, broker },
            prefetch: config.prefetch,
            cancel,
            broker_stop: broker_cancel.drop_guard(),
        })
    }

    pub fn health_addr(&self) -> std::io::Result<SocketAddr> {
        self.health.local_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.deliverer.pool
    }

    /// Runs until the cancellation token fires: declares the delay tiers,
    /// consumes the webhook queue, and on shutdown lets in-flight deliveries
    /// finish (or return to the queue) before returning.
    pub async fn run(self) -> std::io::Result<()> {
        let cancel = self.cancel.clone();
        let router = shared::ops::router(self.readiness.clone());
        let health_cancel = cancel.clone();
        let health = tokio::spawn(
            axum::serve(self.health, router)
                .with_graceful_shutdown(async move { health_cancel.cancelled().await })
                .into_future(),
        );
        let deliverer = self.deliverer;
        if deliverer.delays.declare_until_ready(&deliverer.broker, &cancel).await {
            let handler = {
                let deliverer = deliverer.clone();
                move |delivery| {
                    let deliverer = deliverer.clone();
                    async move { deliverer.handle(delivery).await }
                }
            };
            let queue = deliverer.delays.queue().to_owned();
            shared::amqp::consume(deliverer.broker.clone(), queue, self.prefetch, cancel.clone(), handler).await;
        }
        drop(self.broker_stop);
        tracing::info!("webhook worker stopped");
        match health.await {
            Ok(result) => result,
            Err(error) => Err(std::io::Error::other(error)),
        }
    }
}
