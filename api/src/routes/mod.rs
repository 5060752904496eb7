//! The router: `/v2` resources behind the request-id middleware, the HTTP
//! metrics, a panic guard and the body limit, with `/health` beside them;
//! and the operations router of `OPS_ADDR`.

pub mod callbacks;
pub mod fraud_guard;
pub mod phone_validations;
pub mod project_flows;
pub mod projects;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
pub mod webhook_event_types;
pub mod webhook_messages;

use crate::envelope::request_id;
use crate::error::{code_for, envelope, ApiError};
use crate::extract::{refuse_declared_oversize, MAX_BODY_BYTES};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;

/// The public router; `documents` (the OpenAPI document's route, built by
/// `openapi`, which imports these routes) is served beside the resources,
/// behind the same layers.
pub fn router(state: AppState, documents: Router) -> Router {
    let v2 = Router::new()
        .route("/projects", post(projects::create).get(projects::list))
        .route("/projects/{id}", get(projects::read))
        .route("/project-flows", post(project_flows::create).get(project_flows::list))
        .route(
            "/project-flows/{id}",
            get(project_flows::read).put(project_flows::update),
        )
        .route("/project-flows/{id}/preview", post(project_flows::content::preview))
        .route(
            "/phone-validations",
            post(phone_validations::create::create).get(phone_validations::read::list),
        )
        .route(
            "/phone-validations/validate",
            post(phone_validations::validate::validate),
        )
        .route("/phone-validations/stats", get(phone_validations::stats::stats))
        .route("/phone-validations/{id}", get(phone_validations::read::read))
        .route(
            "/phone-validations/{id}/next-channel",
            post(phone_validations::next_channel::next_channel),
        )
        .route("/fraud-guard/blocks", get(fraud_guard::list_blocks))
        .route("/fraud-guard/blocks/{prefix}", delete(fraud_guard::lift_block))
        .route("/safe-list", post(fraud_guard::add).get(fraud_guard::list))
        .route("/safe-list/{id}", delete(fraud_guard::remove))
        .route("/webhook-deliveries", get(webhook_deliveries::list))
        .route(
            "/webhook-endpoints",
            post(webhook_endpoints::create).get(webhook_endpoints::list),
        )
        .route(
            "/webhook-endpoints/{id}",
            get(webhook_endpoints::read)
                .patch(webhook_endpoints::update)
                .delete(webhook_endpoints::delete),
        )
        .route(
            "/webhook-endpoints/{id}/rotate-secret",
            post(webhook_endpoints::rotate_secret),
        )
        .route("/webhook-endpoints/{id}/recover", post(webhook_messages::recover))
        .route("/webhook-messages", get(webhook_messages::list))
        .route("/webhook-messages/{eventId}", get(webhook_messages::read))
        .route("/webhook-messages/{eventId}/attempts", get(webhook_messages::attempts))
        .route("/webhook-messages/{eventId}/resend", post(webhook_messages::resend))
        .route("/webhook-event-types", get(webhook_event_types::list));
    Router::new()
        .nest("/v2", v2)
        .nest("/callbacks", callbacks::router())
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
        .merge(documents)
        .merge(crate::console::router())
        // Liveness on the public port too, for load balancers that can only
        // probe the port they send traffic to; the rest is on `OPS_ADDR`.
        .merge(shared::ops::liveness())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_declared_oversize))
        .layer(CatchPanicLayer::custom(|_| {
            envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "500:internal_error".into(),
            )
        }))
        .layer(middleware::from_fn(crate::http_metrics::record))
        .layer(middleware::from_fn(request_id))
}

/// `/health`, `/ready`, `/metrics`: the endpoints every process serves,
/// here on `OPS_ADDR` only (the process's internals are nobody else's).
pub fn ops_router(state: &AppState) -> Router {
    shared::ops::router(shared::ops::Readiness {
        process: "api",
        pool: state.pool.clone(),
        broker: state.broker.clone(),
    })
}

/// The public keys of end users' login tokens (`kid` in each token's header).
async fn jwks(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.login_tokens.jwks().as_ref().clone()),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn method_not_allowed() -> Response {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    envelope(status, &code_for(status), "405:method_not_allowed".into()).into_response()
}
