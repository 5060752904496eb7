//! `/callbacks/vonage/status`: Vonage's delivery receipts, as a query string
//! (`GET`), a form or JSON (`POST`). The signed-callback `sig` parameter
//! must verify with `VONAGE_SIGNATURE_SECRET`; without that secret every
//! receipt is refused (fail closed).

use super::delivery::record;
use super::{refused, signatures};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiBytes;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use shared::domain::delivery::{DeliveryStatus, Report, ReportingProvider};

pub async fn receipt_query(State(app): State<AppState>, RawQuery(query): RawQuery) -> ApiResult<StatusCode> {
    let params = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    receipt(&app, params).await
}

pub async fn receipt_body(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<StatusCode> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let params = if json {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("invalid_json"))?;
        object
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect()
    } else {
        url::form_urlencoded::parse(&body).into_owned().collect()
    };
    receipt(&app, params).await
}

async fn receipt(app: &AppState, params: Vec<(String, String)>) -> ApiResult<StatusCode> {
    let callbacks = &app.callbacks;
    let Some(secret) = &callbacks.vonage_signature_secret else {
        tracing::warn!("a Vonage receipt came, but VONAGE_SIGNATURE_SECRET is not set: refused");
        return Err(refused());
    };
    if !signatures::vonage_valid(secret.expose_secret(), callbacks.vonage_signature_method, &params) {
        return Err(refused());
    }
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let message_id = field("messageId").ok_or(ApiError::Missing(vec!["messageId"]))?;
    let Some(status) = field("status").as_deref().and_then(DeliveryStatus::from_vonage) else {
        return Ok(StatusCode::OK);
    };
    let report = Report {
        provider: ReportingProvider::Vonage,
        message_id,
        status,
        error_code: field("err-code").filter(|c| !c.is_empty() && c != "0"),
    };
    record(app, &report).await?;
    Ok(StatusCode::OK)
}
