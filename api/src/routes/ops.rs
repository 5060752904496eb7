//! `/health`, `/ready`, `/metrics` (shared with the workers) and `/openapi.json`.

use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use shared::ops::Readiness;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/ready", get(ready))
        .merge(
            // /health and /metrics need no state of ours.
            Router::new()
                .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
                .route(
                    "/metrics",
                    get(|| async {
                        (
                            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            shared::ops::prometheus().render(),
                        )
                    }),
                ),
        )
}

async fn ready(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let readiness = Readiness {
        pool: state.pool.clone(),
        broker: state.broker.clone(),
    };
    let (database, broker) = readiness.check().await;
    let status = if database && broker {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"database": database, "broker": broker})),
    )
}
