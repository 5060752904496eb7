//! Providers' status callbacks (docs/contract.md §11), signed the way each provider
//! signs them with the test API's secrets, and a Twilio stand-in that
//! reports a message undelivered *before* it answers the send (so the
//! receipt always lands before the dispatcher can record the send).

use crate::api::{TestApp, PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN, VONAGE_SIGNATURE_SECRET, WHATSAPP_APP_SECRET};
use api::routes::callbacks::signatures::sign;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const TWILIO_STATUS: &str = "/callbacks/twilio/status";
pub const TWILIO_VOICE: &str = "/callbacks/twilio/voice";
pub const VONAGE_STATUS: &str = "/callbacks/vonage/status";
pub const WHATSAPP: &str = "/callbacks/whatsapp";

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Posts Twilio's status callback with `params` to the API at `base`,
/// signed with the test API's auth token.
pub async fn post_twilio_status(http: &reqwest::Client, base: &str, params: &[(&str, &str)]) -> StatusCode {
    let params = owned(params);
    let signature = sign::twilio(TWILIO_AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{TWILIO_STATUS}"), &params);
    let response = http
        .post(format!("{base}{TWILIO_STATUS}"))
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .expect("the API answers a Twilio callback");
    StatusCode::from_u16(response.status().as_u16()).expect("an HTTP status")
}

/// Meta's notification carrying `statuses` (`[{"id", "status", "errors"?}]`).
pub fn meta_notification(statuses: Value) -> Vec<u8> {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [
        {"field": "messages", "value": {"statuses": statuses}}]}]});
    serde_json::to_vec(&body).expect("a JSON body")
}

impl TestApp {
    /// Twilio's status callback, signed.
    pub async fn twilio_status(&self, params: &[(&str, &str)]) -> StatusCode {
        post_twilio_status(&self.http, &self.base, params).await
    }

    /// Twilio's call status callback, signed.
    pub async fn twilio_call_status(&self, params: &[(&str, &str)]) -> StatusCode {
        let params = owned(params);
        let signature = sign::twilio(TWILIO_AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{TWILIO_VOICE}"), &params);
        let response = self
            .http
            .post(format!("{}{TWILIO_VOICE}", self.base))
            .header("x-twilio-signature", signature)
            .form(&params)
            .send()
            .await
            .expect("the API answers a Twilio call callback");
        StatusCode::from_u16(response.status().as_u16()).expect("an HTTP status")
    }

    /// Meta's status notification, signed with `WHATSAPP_APP_SECRET`.
    pub async fn meta_statuses(&self, statuses: Value) -> StatusCode {
        let body = meta_notification(statuses);
        self.meta_body(&body, sign::meta(WHATSAPP_APP_SECRET, &body)).await
    }

    /// Posts a WhatsApp callback body with this `X-Hub-Signature-256`.
    pub async fn meta_body(&self, body: &[u8], signature: String) -> StatusCode {
        let response = self
            .http
            .post(format!("{}{WHATSAPP}", self.base))
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .expect("the API answers a WhatsApp callback");
        StatusCode::from_u16(response.status().as_u16()).expect("an HTTP status")
    }

    /// Vonage's delivery receipt as a form, signed (`sig`, MD5 hash) with
    /// `VONAGE_SIGNATURE_SECRET`.
    pub async fn vonage_receipt(&self, params: &[(&str, &str)]) -> StatusCode {
        let mut params = owned(params);
        params.push(("sig".into(), sign::vonage_md5(VONAGE_SIGNATURE_SECRET, &params)));
        let response = self
            .http
            .post(format!("{}{VONAGE_STATUS}", self.base))
            .form(&params)
            .send()
            .await
            .expect("the API answers a Vonage receipt");
        StatusCode::from_u16(response.status().as_u16()).expect("an HTTP status")
    }
}

/// What the early-reporting Twilio stand-in saw and did.
#[derive(Default)]
pub struct EarlyLog {
    /// Each send's form fields, in order.
    pub sends: Vec<HashMap<String, String>>,
    /// The API's answer to each receipt posted before answering a send.
    pub receipts: Vec<StatusCode>,
}

#[derive(Clone)]
struct Early {
    http: reqwest::Client,
    api_base: String,
    error_code: &'static str,
    log: Arc<Mutex<EarlyLog>>,
}

/// A Twilio stand-in (a small axum server) that answers each send with
/// `SMearly<n>`, but first posts Twilio's signed `undelivered` receipt
/// (`ErrorCode` = `error_code`) for that message to the API at `api_base`
/// and waits for its answer.
pub struct EarlyTwilio {
    pub uri: String,
    pub log: Arc<Mutex<EarlyLog>>,
}

impl EarlyTwilio {
    pub async fn start(api_base: &str, error_code: &'static str) -> Self {
        let log = Arc::new(Mutex::new(EarlyLog::default()));
        let state = Early {
            http: reqwest::Client::new(),
            api_base: api_base.to_owned(),
            error_code,
            log: log.clone(),
        };
        let router = axum::Router::new().fallback(early_send).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the Twilio stand-in");
        let uri = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { uri, log }
    }
}

async fn early_send(State(early): State<Early>, body: axum::body::Bytes) -> impl IntoResponse {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let sid = {
        let mut log = early.log.lock().expect("the stand-in's log");
        log.sends.push(form);
        format!("SMearly{}", log.sends.len())
    };
    let receipt = [
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", early.error_code),
    ];
    let answered = post_twilio_status(&early.http, &early.api_base, &receipt).await;
    early.log.lock().expect("the stand-in's log").receipts.push(answered);
    (StatusCode::CREATED, Json(json!({"sid": sid, "status": "queued"})))
}
