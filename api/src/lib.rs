//! The HTTP API: projects, project flows and phone validations (docs/contract.md §4).
//! `build` assembles the application from its configuration and returns it
//! unstarted, so tests can run it on port 0 with their own database and queues.

pub mod auth;
pub mod config;
pub mod console;
pub mod create;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod fraud;
pub mod http_metrics;
pub mod listing;
pub mod login_token;
pub mod openapi;
pub mod routes;
pub mod serve;
pub mod state;
pub mod stats;
pub mod store;
pub mod webhook_events;

use anyhow::Context;
use auth::{Jwt, TokenVersions};
use config::ApiConfig;
use shared::amqp::Topology;
use shared::otp::OtpHasher;
use shared::process::{Messaging, Service};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use state::AppState;

/// A built, bound, not yet running API.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// `OPS_ADDR`'s listener and what it serves: `/health`, `/ready`, `/metrics`.
    ops: TcpListener,
    ops_router: axum::Router,
    http: serve::HttpConfig,
    cancel: CancellationToken,
    messaging: Messaging,
    pub state: AppState,
}

impl Service for Application {
    type Config = ApiConfig;
    const NAME: &'static str = "API";

    /// Connects to the database, starts the broker supervisor and the outbox
    /// relay, and binds the listener. `topology` names the queues.
    async fn build(config: ApiConfig, topology: Topology, cancel: CancellationToken) -> anyhow::Result<Self> {
        let pool = shared::process::connect_database(&config.common).await?;
        let messaging = Messaging::start(&config.common, topology, "api", Some((pool.clone(), config.relay)));
        let (broker, relay) = (messaging.broker.clone(), messaging.relay.clone());
        let relay = relay.context("the API's relay")?;
        shared::ops::prometheus();
        let login_tokens = login_token::LoginTokens::start(
            config.login_token_key.clone(),
            config.token_issuer.clone(),
            pool.clone(),
            cancel.clone(),
        )
        .await
        .context("while loading the login-token keys")?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let state = AppState {
            broker,
            relay: relay.clone(),
            jwt: Jwt::new(&config.jwt_secret),
            token_versions: TokenVersions::new(pool.clone()),
            login_tokens,
            // The API only verifies; the cost travels inside each stored hash.
            hasher: OtpHasher::new(config.otp_pepper.clone(), 4),
            bcrypt_slots: Arc::new(Semaphore::new(cores)),
            flows: create::flow_cache::new_cache(),
            callbacks: Arc::new(config.callbacks.clone()),
            creates: Arc::new(create::group_commit::GroupCommit::start(pool.clone(), relay.clone())),
            webhooks: Arc::new(config.webhooks.clone()),
            pool,
        };
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("while binding API_ADDR {}", config.addr))?;
        let ops = TcpListener::bind(config.ops_addr)
            .await
            .with_context(|| format!("while binding OPS_ADDR {}", config.ops_addr))?;
        fraud::judge::spawn(state.pool.clone(), relay.clone(), config.fraud_guard, cancel.clone());
        let router = routes::router(state.clone(), openapi::router());
        let ops_router = routes::ops_router(&state);
        Ok(Self {
            listener,
            router,
            ops,
            ops_router,
            http: config.http,
            cancel,
            messaging,
            state,
        })
    }

    /// Serves until the cancellation token fires, then drains in-flight
    /// requests, lets the relay publish what it holds, and closes the broker.
    async fn run(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, ops_addr = %self.ops.local_addr()?, "API listening");
        tokio::join!(
            serve::serve(self.listener, self.router, self.http.clone(), self.cancel.clone()),
            serve::serve(self.ops, self.ops_router, self.http, self.cancel),
        );
        self.messaging.shutdown().await;
        Ok(())
    }
}

impl Application {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/ready` and `/metrics` answer (`OPS_ADDR`).
    pub fn ops_addr(&self) -> std::io::Result<SocketAddr> {
        self.ops.local_addr()
    }
}
