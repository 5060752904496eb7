//! The providers' stand-ins: Twilio and Vonage on loopback, answering at
//! once or after a set latency (a real provider takes 150–400 ms), Twilio
//! failing a share of requests if asked, throttling a share of codes at
//! first (429 with `Retry-After`, as Twilio does over an account's
//! concurrency) if asked, and, if asked, posting a signed Twilio status
//! callback for every accepted message, as Twilio would.

use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::json;
use shared::ObjectId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every message a stand-in accepted, and the distinct numbers.
#[derive(Default)]
pub struct Received {
    pub all: Vec<(String, Instant, &'static str)>,
    pub phones: HashSet<String>,
    /// When each throttled number was answered 429.
    pub throttled: HashMap<String, Instant>,
    /// The shortest time between a 429 and the same number's next request.
    pub shortest_retry: Option<Duration>,
}

/// Where callbacks go, and how many were answered 2xx / otherwise.
pub struct Callbacks {
    pub url: String,
    pub auth_token: String,
    pub http: reqwest::Client,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub last: Mutex<Option<Instant>>,
}

#[derive(Clone)]
pub struct StandIns {
    pub received: Arc<Mutex<Received>>,
    /// Share of requests the first provider (Twilio) answers 500 to, in tenths.
    fail_tenths: u64,
    counter: Arc<AtomicU64>,
    /// How long each provider takes to answer an accepted (or failed) send.
    latency: Duration,
    /// Share of numbers Twilio answers 429 at their first request, in tenths.
    throttle_tenths: u64,
    /// The `Retry-After` of those 429s.
    pub retry_after: Duration,
    throttle_counter: Arc<AtomicU64>,
    pub callbacks: Option<Arc<Callbacks>>,
}

/// What the stand-ins do besides accepting.
pub struct Behaviour {
    pub fail_ratio: f64,
    pub latency: Duration,
    pub rate_limit_ratio: f64,
    pub retry_after: Duration,
}

fn tenths(ratio: f64) -> u64 {
    (ratio.clamp(0.0, 1.0) * 10.0).round() as u64
}

impl StandIns {
    pub fn new(behaviour: Behaviour, callbacks: Option<Callbacks>) -> Self {
        Self {
            received: Arc::default(),
            fail_tenths: tenths(behaviour.fail_ratio),
            counter: Arc::default(),
            latency: behaviour.latency,
            throttle_tenths: tenths(behaviour.rate_limit_ratio),
            retry_after: behaviour.retry_after,
            throttle_counter: Arc::default(),
            callbacks: callbacks.map(Arc::new),
        }
    }

    /// Whether this request is a throttled number's first (answered 429);
    /// notes how soon a throttled number came back.
    fn throttles(&self, to: &str) -> bool {
        let Ok(mut received) = self.received.lock() else {
            return false;
        };
        if let Some(at) = received.throttled.get(to) {
            let gap = at.elapsed();
            received.shortest_retry = Some(received.shortest_retry.map_or(gap, |s| s.min(gap)));
            return false;
        }
        if received.phones.contains(to) || self.throttle_tenths == 0 {
            return false;
        }
        let n = self.throttle_counter.fetch_add(1, Ordering::Relaxed);
        if n % 10 < self.throttle_tenths {
            received.throttled.insert(to.to_owned(), Instant::now());
            return true;
        }
        false
    }

    /// Serves both stand-ins; returns their base URL.
    pub async fn serve(self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio))
            .route("/sms/json", post(vonage))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    fn accept(&self, to: String, provider: &'static str) {
        if let Ok(mut received) = self.received.lock() {
            received.all.push((to.clone(), Instant::now(), provider));
            received.phones.insert(to);
        }
    }
}

async fn twilio(
    State(stand_ins): State<StandIns>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let to = form.get("To").cloned().unwrap_or_default();
    // A 429 comes at once: Twilio refuses before doing anything.
    if stand_ins.throttles(&to) {
        let retry_after = stand_ins.retry_after.as_secs().max(1).to_string();
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after)],
            Json(json!({"code": 20429, "message": "Too Many Requests"})),
        )
            .into_response();
    }
    tokio::time::sleep(stand_ins.latency).await;
    let n = stand_ins.counter.fetch_add(1, Ordering::Relaxed);
    if n % 10 < stand_ins.fail_tenths {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": 20500, "message": "Internal Server Error"})),
        )
            .into_response();
    }
    stand_ins.accept(to, "twilio");
    let sid = format!("SM{}", ObjectId::new());
    if let Some(callbacks) = stand_ins.callbacks.clone() {
        tokio::spawn(delivered(callbacks, sid.clone()));
    }
    (
        axum::http::StatusCode::CREATED,
        Json(json!({"sid": sid, "status": "queued"})),
    )
        .into_response()
}

async fn vonage(
    State(stand_ins): State<StandIns>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    tokio::time::sleep(stand_ins.latency).await;
    let to = form.get("to").cloned().unwrap_or_default();
    stand_ins.accept(format!("+{to}"), "vonage");
    Json(
        json!({"message-count": "1", "messages": [{"to": to, "status": "0", "message-id": ObjectId::new().to_string()}]}),
    )
}

/// What Twilio does a moment after accepting a message: reports it delivered.
async fn delivered(callbacks: Arc<Callbacks>, sid: String) {
    let params = vec![
        ("MessageSid".to_owned(), sid),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let signature =
        api::routes::callbacks::signatures::sign::twilio(&callbacks.auth_token, &callbacks.url_signed(), &params);
    let answered = callbacks
        .http
        .post(&callbacks.url)
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await;
    let counter = match answered {
        Ok(response) if response.status().is_success() => &callbacks.ok,
        _ => &callbacks.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut last) = callbacks.last.lock() {
        *last = Some(Instant::now());
    }
}

impl Callbacks {
    /// The URL Twilio signs: `PUBLIC_BASE_URL` + the callback path.
    fn url_signed(&self) -> String {
        format!("{}/callbacks/twilio/status", crate::PUBLIC_BASE_URL)
    }
}
