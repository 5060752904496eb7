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
    pub pool: PgPool,
    pub broker: Broker,
}

impl Readiness {
    pub async fn check(&self) -> (bool, bool) {
        (crate::db::is_reachable(&self.pool).await, self.broker.is_connected())
    }
}

/// `/health`, `/ready` and `/metrics`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(readiness)
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

async fn render_metrics() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}
