//! The operations endpoints every process serves: `/health` (up),
//! `/ready` (database and broker reachable), `/metrics` (Prometheus text).

use crate::amqp::Broker;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            let builder = builder
                .set_buckets(&buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (tests): keep a private one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// What readiness checks.
#[derive(Clone)]
pub struct Readiness {
    /// `api`, `dispatcher` or `webhook-worker`: the `process` label of `otp_ready`.
    pub process: &'static str,
    pub pool: PgPool,
    pub broker: Broker,
}

impl Readiness {
    pub async fn check(&self) -> (bool, bool) {
        (crate::db::is_reachable(&self.pool).await, self.broker.is_connected())
    }
}

/// Samples how many messages wait in each of `queues` (ready, not yet
/// delivered) every `every`, as `queue_messages{queue}`: what an autoscaler
/// or an alert reads without RabbitMQ's management plugin.
pub fn sample_queues(broker: Broker, queues: Vec<String>, every: std::time::Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !broker.is_connected() {
                continue;
            }
            for queue in &queues {
                if let Some(count) = broker.queue_messages(queue).await {
                    metrics::gauge!("queue_messages", "queue" => queue.clone()).set(f64::from(count));
                }
            }
        }
    });
}

/// `/health`, `/ready` and `/metrics`.
pub fn router(readiness: Readiness) -> Router {
    liveness()
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(readiness)
}

/// `/health` alone, for a port that serves nothing else of operations.
pub fn liveness<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/health", get(health))
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (database, broker) = readiness.check().await;
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"database": database, "broker": broker})),
    )
}

/// The metrics, with `otp_ready` (1 when the database and the broker are
/// reachable) refreshed at each scrape.
async fn render_metrics(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (database, broker) = readiness.check().await;
    metrics::gauge!("otp_ready", "process" => readiness.process).set(if database && broker { 1.0 } else { 0.0 });
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}
