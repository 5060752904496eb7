//! Status callbacks from the providers (docs/contract.md §11): Twilio, Meta's
//! WhatsApp and Vonage report what became of a message. Each fails closed:
//! checked with the provider's own signature scheme (a bad or missing
//! signature, or no secret configured for that provider, answers 403 and
//! changes nothing), it changes only messages its own provider sent, is
//! recorded in short transactions and answered at once. A message id not
//! recorded (yet) answers 200: the receipt is kept and applied if its send
//! is recorded later (`shared::store::receipts`).

mod delivery;
pub mod signatures;
mod twilio;
mod vonage;
mod whatsapp;

pub use shared::domain::delivery::{failover_cause, Report};

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

/// `/callbacks/...`, outside `/v2` (no bearer token: signatures instead).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/twilio/status", post(twilio::status))
        .route("/twilio/voice", post(twilio::voice))
        .route("/whatsapp", get(whatsapp::handshake).post(whatsapp::statuses))
        .route("/vonage/status", get(vonage::receipt_query).post(vonage::receipt_body))
}

/// `403:invalid_signature`.
fn refused() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "invalid_signature")
}
