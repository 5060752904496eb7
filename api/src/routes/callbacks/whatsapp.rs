//! `/callbacks/whatsapp`: Meta's webhook. `GET` is the subscription
//! handshake (echo `hub.challenge` when `hub.verify_token` matches);
//! `POST` carries status notifications signed with `X-Hub-Signature-256`
//! over the raw body.

use super::delivery::record;
use super::{refused, signatures};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiBytes;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use shared::domain::delivery::{DeliveryStatus, Report, ReportingProvider};
use subtle::ConstantTimeEq;

pub async fn handshake(State(app): State<AppState>, RawQuery(query): RawQuery) -> ApiResult<String> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let expected = app.callbacks.whatsapp_verify_token.as_ref().ok_or_else(refused)?;
    let token_ok: bool = field("hub.verify_token")
        .unwrap_or_default()
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if field("hub.mode") != Some("subscribe") || !token_ok {
        return Err(refused());
    }
    Ok(field("hub.challenge").unwrap_or_default().to_owned())
}

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    value: Value,
}

#[derive(Deserialize)]
struct Value {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    errors: Vec<MetaError>,
}

#[derive(Deserialize)]
struct MetaError {
    code: Option<i64>,
}

pub async fn statuses(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<StatusCode> {
    let Some(secret) = app.callbacks.whatsapp_app_secret.as_ref() else {
        tracing::warn!("a WhatsApp status callback came, but WHATSAPP_APP_SECRET is not set: refused");
        return Err(refused());
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    if !signatures::meta_valid(secret.expose_secret(), &body, signature) {
        return Err(refused());
    }
    let notification: Notification =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("invalid_json"))?;
    let statuses = notification
        .entry
        .into_iter()
        .flat_map(|e| e.changes)
        .flat_map(|c| c.value.statuses);
    for status in statuses {
        let Some(delivery) = DeliveryStatus::from_meta(&status.status) else {
            continue;
        };
        let report = Report {
            provider: ReportingProvider::Meta,
            message_id: status.id,
            status: delivery,
            error_code: status.errors.first().and_then(|e| e.code).map(|c| c.to_string()),
        };
        record(&app, &report).await?;
    }
    Ok(StatusCode::OK)
}
