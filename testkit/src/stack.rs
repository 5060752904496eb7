//! The whole service as child processes: the API, the dispatcher and the
//! webhook worker on one fresh database and one `AMQP_URL` (which may list
//! several brokers), with a loopback Twilio stand-in that records when each
//! code arrived. For tests of what only running processes show, such as a
//! broker node dying under them (`dispatcher/tests/it/node_loss.rs`).

use crate::api::{create_client, JWT_SECRET, PEPPER};
use crate::dispatch::{code_in, ACCOUNT, CODE_KEY, FROM};
use crate::infra;
use crate::process::{free_port, start_service, Running, Service};
use api::auth::Jwt;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// One SMS the stand-in took.
#[derive(Clone, Debug)]
pub struct Sms {
    /// E.164.
    pub to: String,
    pub code: String,
    pub at: Instant,
}

#[derive(Clone)]
struct SinkState {
    messages: Arc<Mutex<Vec<Sms>>>,
    delay: Duration,
    count: Arc<AtomicUsize>,
}

/// A Twilio stand-in on loopback: answers every message `201` after
/// `delay` (a provider's latency) and records it with its arrival time.
pub struct SmsSink {
    pub addr: std::net::SocketAddr,
    messages: Arc<Mutex<Vec<Sms>>>,
}

impl SmsSink {
    pub async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the SMS stand-in");
        let addr = listener.local_addr().expect("the SMS stand-in's address");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let state = SinkState {
            messages: messages.clone(),
            delay,
            count: Arc::new(AtomicUsize::new(0)),
        };
        let router = axum::Router::new().fallback(take_sms).with_state(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, messages }
    }

    /// `TWILIO_BASE_URL`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every message so far, in arrival order.
    pub fn messages(&self) -> Vec<Sms> {
        self.messages.lock().expect("the SMS record").clone()
    }
}

async fn take_sms(State(state): State<SinkState>, body: axum::body::Bytes) -> axum::response::Response {
    let at = Instant::now();
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (Some(to), Some(text)) = (form.get("To"), form.get("Body")) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    state.messages.lock().expect("the SMS record").push(Sms {
        to: to.clone(),
        code: code_in(text),
        at,
    });
    tokio::time::sleep(state.delay).await;
    let n = state.count.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": format!("SM{n:032}"), "status": "queued"})),
    )
        .into_response()
}

/// The three processes, and what a test needs to talk to them.
pub struct Stack {
    pub api: Running,
    pub dispatcher: Running,
    pub worker: Running,
    /// The API's base URL.
    pub base: String,
    /// `/ready` of each process.
    pub ready_urls: [String; 3],
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub token: String,
}

/// Retry schedules of the dispatcher and the worker in a stack (short, as in
/// other tests).
pub const SCHEDULE: &str = "1s,3s";
/// The delay tiers a stack declares: [`SCHEDULE`] and the dispatcher's lease
/// (10 s by default); what `delete_namespace` takes.
pub const DELAY_TIERS: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(10)];

impl Stack {
    /// Starts the three processes on a fresh database, `amqp_url` and queue
    /// prefix `prefix`, the dispatcher sending SMS to `sms`. `dispatcher` is
    /// the dispatcher's binary (`env!("CARGO_BIN_EXE_dispatcher")` in its
    /// crate's tests); the API and the worker run as this test binary (see
    /// [`start_service`]). Returns once all three are ready.
    pub async fn start(dispatcher: &str, amqp_url: &str, prefix: &str, sms: &SmsSink) -> Self {
        let (database_url, pool) = infra::database().await;
        let common = [
            ("DATABASE_URL", database_url),
            ("AMQP_URL", amqp_url.to_owned()),
            ("AMQP_PREFIX", prefix.to_owned()),
            ("OTP_PEPPER", PEPPER.to_owned()),
        ];
        let (api_port, dispatcher_port, worker_port) = (free_port(), free_port(), free_port());
        let ops_port = free_port();
        let with = |extra: &[(&'static str, String)]| [&common[..], extra].concat();
        let api = start_service(
            Service::Api,
            &with(&[
                ("API_ADDR", format!("127.0.0.1:{api_port}")),
                ("OPS_ADDR", format!("127.0.0.1:{ops_port}")),
                ("JWT_SECRET", JWT_SECRET.into()),
                ("WEBHOOK_SECRET_KEY", crate::api::WEBHOOK_SECRET_KEY.into()),
            ]),
        );
        let dispatcher = Running::start(
            dispatcher,
            &with(&[
                ("HEALTH_ADDR", format!("127.0.0.1:{dispatcher_port}")),
                ("OTP_CODE_KEY", CODE_KEY.into()),
                ("DISPATCH_RETRY_SCHEDULE", SCHEDULE.into()),
                ("SMS_PROVIDER", "twilio".into()),
                ("TWILIO_BASE_URL", sms.uri()),
                ("TWILIO_ACCOUNT_SID", ACCOUNT.into()),
                ("TWILIO_AUTH_TOKEN", "twilio-token".into()),
                ("TWILIO_FROM", FROM.into()),
            ]),
        );
        let worker = start_service(
            Service::WebhookWorker,
            &with(&[
                ("HEALTH_ADDR", format!("127.0.0.1:{worker_port}")),
                ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
                ("WEBHOOK_RETRY_SCHEDULE", SCHEDULE.into()),
                ("WEBHOOK_SECRET_KEY", crate::api::WEBHOOK_SECRET_KEY.into()),
            ]),
        );
        let client = create_client(&pool, "Acme").await;
        let token = Jwt::new(&SecretString::from(JWT_SECRET))
            .client_token(&client, 0, 1)
            .expect("a token");
        let stack = Self {
            api,
            dispatcher,
            worker,
            base: format!("http://127.0.0.1:{api_port}"),
            ready_urls: [ops_port, dispatcher_port, worker_port].map(|port| format!("http://127.0.0.1:{port}/ready")),
            pool,
            http: reqwest::Client::new(),
            token,
        };
        stack.wait_ready(Duration::from_secs(60)).await;
        stack
    }

    /// Waits until every process answers `/ready` with 200 (database and broker up).
    pub async fn wait_ready(&self, timeout: Duration) {
        for url in &self.ready_urls {
            infra::eventually(timeout, &format!("{url} to answer 200"), || async {
                let ready = self.http.get(url).send().await.ok()?;
                ready.status().is_success().then_some(())
            })
            .await;
        }
    }

    /// POSTs `body` to the API as the test client: (status, body).
    pub async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value), reqwest::Error> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// A project and a login flow with `phone` settings: (project, flow).
    pub async fn project_and_flow(&self, phone: Value) -> (String, String) {
        let (status, project) = self
            .post("/v2/projects", json!({"name": "Acme"}))
            .await
            .expect("create a project");
        assert_eq!(status, StatusCode::OK, "{project}");
        let project = project["data"]["_id"].as_str().expect("a project id").to_owned();
        let (status, flow) = self
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": phone}),
            )
            .await
            .expect("create a flow");
        assert_eq!(status, StatusCode::OK, "{flow}");
        (project, flow["data"]["_id"].as_str().expect("a flow id").to_owned())
    }

    /// Validates `phone` (+507) with `code`: the status.
    pub async fn validate(&self, phone: &str, code: &str) -> StatusCode {
        let (status, _) = self
            .post(
                "/v2/phone-validations/validate",
                json!({"phone": phone, "countryCode": "+507", "otp": code}),
            )
            .await
            .expect("an answer to validate");
        status
    }
}
