//! The webhook worker under test: the real API and the real worker,
//! in-process, on a fresh database and a private RabbitMQ namespace, plus
//! loopback receivers that answer as a test scripts them, black holes that
//! never answer, and helpers to read what was recorded.

use crate::api::{common_config, Response, TestApp};
use crate::infra;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::process::Service;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use webhook_worker::config::{parse_schedule, EndpointConfig, WebhookConfig};
use webhook_worker::WebhookWorker;

/// The secret `create_client` gives every test client.
pub use crate::api::WEBHOOK_SECRET as SECRET;
/// The code `TestEnv::validated` stores and then sends.
pub const CODE: &str = "123456";

/// How the worker under test is configured.
pub struct Options {
    pub schedule: &'static str,
    pub timeout: Duration,
    pub allow_private: bool,
    pub prefetch: u16,
    pub per_host: usize,
    /// Webhook endpoints' delivery (poll, per-endpoint slots, disable, retention).
    pub endpoints: EndpointConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            schedule: "1s,2s",
            timeout: Duration::from_secs(5),
            allow_private: true,
            prefetch: 32,
            per_host: 4,
            endpoints: EndpointConfig {
                poll: Duration::from_millis(100),
                ..EndpointConfig::default()
            },
        }
    }
}

/// A worker's configuration for `app`'s database.
fn worker_config(app: &TestApp, options: &Options) -> WebhookConfig {
    WebhookConfig {
        common: common_config(&app.database_url, &infra::amqp_url()),
        secret_keys: crate::api::webhook_secret_keys(),
        health_addr: "127.0.0.1:0".parse().expect("test setup"),
        allow_private: options.allow_private,
        timeout: options.timeout,
        retry_schedule: parse_schedule(options.schedule).expect("test setup"),
        prefetch: options.prefetch,
        per_host_concurrency: options.per_host,
        host_wait: Duration::from_millis(250),
        endpoints: options.endpoints.clone(),
    }
}

/// A webhook worker in-process beside `app` (its database and queues):
/// its stop token, its `run()` and its health address.
pub async fn start_worker(
    app: &TestApp,
    options: &Options,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>, String) {
    let config = worker_config(app, options);
    let worker = CancellationToken::new();
    let built = WebhookWorker::build(config, app.topology.clone(), worker.clone())
        .await
        .expect("build the worker");
    let health = format!("http://{}", built.health_addr().expect("test setup"));
    let running = tokio::spawn(built.run());
    wait_worker_ready(app, &health).await;
    (worker, running, health)
}

async fn wait_worker_ready(app: &TestApp, health: &str) {
    infra::eventually(Duration::from_secs(30), "the worker to be ready", || async {
        let r = app.http.get(format!("{health}/ready")).send().await.ok()?;
        (r.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
}

/// The API and the worker, sharing a database and a queue namespace.
pub struct TestEnv {
    pub app: TestApp,
    pub worker: CancellationToken,
    /// The worker's `run()`, which returns once it has shut down.
    pub running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub health: String,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.worker.cancel();
    }
}

impl TestEnv {
    /// A worker's configuration for `app`'s database.
    pub fn worker_config(app: &TestApp, options: &Options) -> WebhookConfig {
        worker_config(app, options)
    }

    pub async fn spawn(options: Options) -> Self {
        let app = TestApp::spawn().await;
        let (worker, running, health) = start_worker(&app, &options).await;
        let env = Self {
            app,
            worker,
            running: Some(running),
            health,
        };
        env.app.wait_for_broker().await;
        env.wait_ready().await;
        env
    }

    async fn wait_ready(&self) {
        wait_worker_ready(&self.app, &self.health).await;
    }

    pub fn webhook_queue(&self) -> String {
        self.app.topology.webhook_queue()
    }

    /// A project and a login flow delivering to `url`, for the test client.
    pub async fn flow_with_webhook(&self, url: &str, phone: Value) -> (String, String) {
        let mut settings = phone;
        settings["webhookUrl"] = json!(url);
        self.app.project_and_flow(settings).await
    }

    /// Creates a validation for `phone`, stores its code as the dispatcher
    /// would, and validates it: a `validated` event is on its way.
    pub async fn validated(&self, project: &str, flow: &str, phone: &str) -> String {
        let id = self.create(project, flow, phone, None).await;
        self.app.store_code(&id, CODE).await;
        let response = self.app.validate(phone, json!(CODE)).await;
        assert_eq!(response.status, reqwest::StatusCode::OK, "{:?}", response.body);
        id
    }

    /// A validation with an optional own `webhookUrl`; returns its id.
    pub async fn create(&self, project: &str, flow: &str, phone: &str, webhook_url: Option<&str>) -> String {
        let extra = webhook_url.map_or(json!({}), |url| json!({"webhookUrl": url}));
        self.app.create_id(project, flow, phone, extra).await
    }

    /// The attempts recorded for a validation, oldest first: (round, attempt, outcome, status).
    pub async fn attempts(&self, validation: &str) -> Vec<(i32, i32, String, Option<i32>)> {
        sqlx::query_as(
            "SELECT round, attempt, outcome, status_code FROM webhook_deliveries
              WHERE validation_id = $1 ORDER BY id",
        )
        .bind(validation)
        .fetch_all(&self.app.pool)
        .await
        .expect("test setup")
    }

    /// Waits until the attempts of `validation` satisfy `done`.
    pub async fn wait_attempts(
        &self,
        validation: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[(i32, i32, String, Option<i32>)]) -> bool,
    ) -> Vec<(i32, i32, String, Option<i32>)> {
        infra::eventually(timeout, what, || async {
            let attempts = self.attempts(validation).await;
            done(&attempts).then_some(attempts)
        })
        .await
    }

    /// Messages ready in `queue` now (0 if it does not exist).
    pub async fn ready_count(&self, queue: &str) -> u32 {
        infra::ready_in(&self.app.amqp, queue).await.unwrap_or(0)
    }

    /// Publishes raw bytes straight to the work queue, as a redelivery would look.
    pub async fn publish_to_work_queue(&self, payload: &[u8], message_id: &str) {
        let channel = self.app.amqp.create_channel().await.expect("test setup");
        channel.confirm_select(Default::default()).await.expect("test setup");
        channel
            .basic_publish(
                "".into(),
                self.webhook_queue().as_str().into(),
                Default::default(),
                payload,
                lapin::BasicProperties::default()
                    .with_message_id(message_id.into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("test setup")
            .await
            .expect("test setup");
        let _ = channel.close(200, "published".into()).await;
    }

    /// POST as another client.
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Response {
        self.app
            .request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    /// The worker's `/metrics` page.
    pub async fn metrics(&self) -> String {
        let response = self.app.http.get(format!("{}/metrics", self.health)).send().await;
        response.expect("the metrics").text().await.expect("the metrics' text")
    }

    pub fn dead_letter_queue(&self) -> String {
        Topology::dead_letter_queue(&self.webhook_queue())
    }
}

/// What a receiver answers to its n-th request (0-based).
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// Answers `status` after `millis`.
    Slow(u16, u64),
    /// Never answers.
    Hang,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The wall clock at arrival (PostgreSQL's clock on this machine).
    pub wall: chrono::DateTime<chrono::Utc>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("test setup")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .expect("test setup")
            .to_str()
            .expect("test setup")
            .to_owned()
    }

    /// The same request with another `webhook-signature` header.
    pub fn with_signature(&self, signature: &str) -> Self {
        let mut copy = self.clone();
        copy.headers
            .insert("webhook-signature", signature.parse().expect("a header value"));
        copy
    }

    /// Checks the signature with the official Standard Webhooks library.
    pub fn verify(&self, secret: &str) -> Result<(), standardwebhooks::WebhookError> {
        standardwebhooks::Webhook::new(secret)?.verify(&self.body, &self.headers)
    }
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    script: Script,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A webhook receiver on a loopback port.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver answering `script(n)` to its n-th request.
    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
        let addr = listener.local_addr().expect("test setup");
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            script: Arc::new(script),
            received: received.clone(),
        };
        let router = axum::Router::new().fallback(receive).with_state(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, received }
    }

    /// A receiver that always answers `status`.
    pub async fn answering(status: u16) -> Self {
        Self::start(move |_| Reply::Status(status)).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("test setup").clone()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        infra::eventually(timeout, &format!("{n} webhook request(s)"), || async {
            let received = self.received();
            (received.len() >= n).then_some(received)
        })
        .await
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let n = {
        let mut received = state.received.lock().expect("test setup");
        received.push(Received {
            headers,
            body,
            at: Instant::now(),
            wall: chrono::Utc::now(),
        });
        received.len() - 1
    };
    match (state.script)(n) {
        Reply::Status(status) => StatusCode::from_u16(status).expect("test setup").into_response(),
        Reply::Slow(status, millis) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            StatusCode::from_u16(status).expect("test setup").into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// Accepts TCP connections and never answers: a dead endpoint.
pub struct BlackHole {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<usize>>,
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
        let addr = listener.local_addr().expect("test setup");
        let accepted = Arc::new(Mutex::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                *counter.lock().expect("test setup") += 1;
                held.push(socket);
            }
        });
        Self { addr, accepted }
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.lock().expect("test setup")
    }
}
