//! `POST /callbacks/twilio/status`: Twilio's message status callback, and
//! `POST /callbacks/twilio/voice`: its call status callback (docs/contract.md §14),
//! each a form signed with `X-Twilio-Signature` over the URL it called
//! (`{PUBLIC_BASE_URL}/callbacks/twilio/…`) and the sorted parameters.

use super::delivery::record;
use super::{refused, signatures};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiBytes;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use shared::domain::delivery::{DeliveryStatus, Report, ReportingProvider};

pub async fn status(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<StatusCode> {
    let params = signed_params(&app, &headers, &body, "/callbacks/twilio/status")?;
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let message_id = field("MessageSid").ok_or(ApiError::Missing(vec!["MessageSid"]))?;
    let Some(status) = field("MessageStatus").as_deref().and_then(DeliveryStatus::from_twilio) else {
        return Ok(StatusCode::OK);
    };
    let report = Report {
        provider: ReportingProvider::Twilio,
        message_id,
        status,
        error_code: field("ErrorCode").filter(|c| !c.is_empty()),
    };
    record(&app, &report).await?;
    Ok(StatusCode::OK)
}

/// A call's status: `completed` is a code read out (delivered); `busy`,
/// `no-answer`, `failed` and `canceled` are a call that read nothing
/// (undelivered), which moves a workflow on to its next channel.
pub async fn voice(State(app): State<AppState>, headers: HeaderMap, ApiBytes(body): ApiBytes) -> ApiResult<StatusCode> {
    let params = signed_params(&app, &headers, &body, "/callbacks/twilio/voice")?;
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let call_id = field("CallSid").ok_or(ApiError::Missing(vec!["CallSid"]))?;
    let Some(status) = field("CallStatus")
        .as_deref()
        .and_then(DeliveryStatus::from_twilio_call)
    else {
        return Ok(StatusCode::OK);
    };
    let report = Report {
        provider: ReportingProvider::Twilio,
        message_id: call_id,
        status,
        error_code: field("ErrorCode").filter(|c| !c.is_empty()),
    };
    record(&app, &report).await?;
    Ok(StatusCode::OK)
}

/// The form's parameters, if Twilio signed them for `path`; fails closed
/// (403) without a token or base URL configured, or a valid signature.
fn signed_params(app: &AppState, headers: &HeaderMap, body: &[u8], path: &str) -> ApiResult<Vec<(String, String)>> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let callbacks = &app.callbacks;
    let (Some(token), Some(base)) = (&callbacks.twilio_auth_token, &callbacks.public_base_url) else {
        tracing::warn!("a Twilio callback came, but TWILIO_AUTH_TOKEN or PUBLIC_BASE_URL is not set: refused");
        return Err(refused());
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    let url = format!("{base}{path}");
    if !signatures::twilio_valid(token.expose_secret(), &url, &params, signature) {
        return Err(refused());
    }
    Ok(params)
}
