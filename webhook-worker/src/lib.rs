//! The webhook worker (docs/contract.md §8): consumes `phone_validation.validated` and
//! `phone_validation.failed` and delivers each, signed per Standard Webhooks,
//! to the client's webhook URL, retrying through delay queues until it is
//! delivered, refused or dead-lettered. `build` returns the worker unstarted,
//! so tests run it in-process with their own database and queue names.

pub mod body;
pub mod config;
pub mod deliver;
pub mod endpoints;
pub mod event;
pub mod fanout;
pub use shared::amqp::dlq;
pub mod hosts;
pub mod plan;
pub mod sender;
pub mod signing;
pub mod ssrf;
pub mod store;

use anyhow::Context;
use config::WebhookConfig;
use deliver::Deliverer;
use endpoints::{EndpointLoop, EndpointParts};
use fanout::FanOut;
use hosts::HostLimiter;
use plan::RetryPolicy;
use sender::Sender;
use shared::amqp::retry::DelayQueues;
use shared::amqp::Topology;
use shared::process::{Consumer, Messaging, Service};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::{EndpointStore, FanOutStore, Store, TargetCache};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a client's keys and a flow's URL are reused before reloading.
const TARGET_CACHE_TTL: Duration = Duration::from_secs(2);

/// A built, bound, not yet running worker.
pub struct WebhookWorker {
    deliverer: Arc<Deliverer>,
    consumer: Consumer,
    endpoints: Arc<EndpointLoop>,
    cancel: CancellationToken,
}

impl Service for WebhookWorker {
    type Config = WebhookConfig;
    const NAME: &'static str = "webhook worker";

    /// Connects to the database, starts the broker supervisor and binds the
    /// health listener. `topology` names the queues.
    async fn build(config: WebhookConfig, topology: Topology, cancel: CancellationToken) -> anyhow::Result<Self> {
        let pool = shared::process::connect_database(&config.common).await?;
        // Secrets under the previous key (and, in the upgrade window,
        // plaintext ones) are sealed with the current key before the first
        // delivery.
        if config.secret_keys.accepts_plaintext() {
            tracing::warn!(
                "WEBHOOK_ACCEPT_PLAINTEXT_SECRETS is on: plaintext webhook secrets are accepted and sealed; \
                 turn it off once this upgrade's start-up has sealed them"
            );
        }
        let resealed = shared::webhook_secrets::reseal_all(&pool, &config.secret_keys)
            .await
            .context("while encrypting stored webhook secrets")?;
        if resealed.resealed > 0 || resealed.skipped > 0 {
            tracing::info!(
                resealed = resealed.resealed,
                skipped = resealed.skipped,
                key_id = config.secret_keys.current_id(),
                "webhook secrets sealed with WEBHOOK_SECRET_KEY"
            );
        }
        let queue = topology.webhook_queue();
        // The broker outlives the consumer's drain (in-flight deliveries still
        // publish retries and ack): `run` closes it last.
        let messaging = Messaging::start(&config.common, topology, "webhook-worker", None);
        let broker = messaging.broker.clone();
        let consumer = Consumer::bind(
            "webhook-worker",
            config.health_addr,
            pool.clone(),
            messaging,
            config.prefetch,
            cancel.clone(),
        )
        .await?;
        shared::ops::prometheus();
        if config.allow_private {
            tracing::warn!("WEBHOOK_ALLOW_PRIVATE is on: webhooks may reach loopback and private addresses");
        }
        let sender = Sender::new(config.timeout, config.allow_private, config.per_host_concurrency)
            .context("while building the HTTP client")?;
        let wake = Arc::new(Notify::new());
        let endpoints = EndpointLoop::new(EndpointParts {
            store: EndpointStore::start(endpoint_pool(&config).await?, config.endpoints.disable_after),
            sender: Sender::new(config.timeout, config.allow_private, config.endpoints.per_endpoint)
                .context("while building the HTTP client")?,
            policy: RetryPolicy::new(config.retry_schedule.clone()),
            sealing: config.secret_keys.clone(),
            config: config.endpoints.clone(),
            allow_private: config.allow_private,
            max_in_flight: usize::from(config.prefetch),
            timeout: config.timeout,
            wake: wake.clone(),
        });
        let deliverer = Deliverer {
            fanout: FanOut::new(FanOutStore::start(pool.clone()), wake),
            store: Store::start(
                pool,
                TargetCache::new(TARGET_CACHE_TTL, config.secret_keys.clone()),
                config.timeout + Duration::from_secs(60),
            ),
            broker,
            delays: DelayQueues::new(queue, &config.retry_schedule),
            policy: RetryPolicy::new(config.retry_schedule.clone()),
            sender,
            hosts: HostLimiter::new(config.per_host_concurrency, config.host_wait),
            allow_private: config.allow_private,
        };
        Ok(Self {
            deliverer: Arc::new(deliverer),
            consumer,
            endpoints: Arc::new(endpoints),
            cancel,
        })
    }

    /// Runs until the cancellation token fires: declares the delay tiers,
    /// consumes the webhook queue and delivers endpoints' due deliveries
    /// from PostgreSQL; on shutdown lets in-flight deliveries finish (or
    /// return to the queue) before returning.
    async fn run(self) -> anyhow::Result<()> {
        let endpoints = tokio::spawn(self.endpoints.run(self.cancel.clone()));
        let consumed = self.consumer.run(self.deliverer).await;
        // The consumer stops on the same token; a consumer that failed stops the loop too.
        self.cancel.cancel();
        endpoints.await.context("the endpoint loop panicked")?;
        consumed
    }
}

/// Connections of the endpoint loop's own (claims, records): their
/// statements are long and their parameters few, so PostgreSQL plans each
/// once per connection (`plan_cache_mode=force_generic_plan`) instead of
/// again at every execution (measured: planning the claim took 7-13 ms, running it 2 ms).
const ENDPOINT_CONNECTIONS: u32 = 6;

async fn endpoint_pool(config: &WebhookConfig) -> anyhow::Result<PgPool> {
    use secrecy::ExposeSecret;
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(config.common.database_url.expose_secret())
        .context("while reading DATABASE_URL")?
        .options([("plan_cache_mode", "force_generic_plan")]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(ENDPOINT_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("while connecting to PostgreSQL (DATABASE_URL)")
}

impl WebhookWorker {
    pub fn health_addr(&self) -> std::io::Result<SocketAddr> {
        self.consumer.health_addr()
    }
    pub fn pool(&self) -> &PgPool {
        self.deliverer.store.pool()
    }
}
