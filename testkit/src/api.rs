//! The API under test: `TestApp::spawn()` starts the real application on
//! port 0 against a fresh database and a private RabbitMQ namespace, with a
//! client and its token ready, and arranges what tests need (projects,
//! flows, validations, stored codes).

mod settings;

use crate::infra;
use api::auth::Jwt;
use api::config::ApiConfig;
use api::Application;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::otp::{OtpCode, OtpHasher};
use shared::process::Service;
use shared::ObjectId;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use settings::*;

pub struct TestApp {
    pub base: String,
    /// `http://` and `OPS_ADDR`: `/health`, `/ready`, `/metrics`.
    pub ops: String,
    pub database_url: String,
    pub pool: PgPool,
    pub topology: Topology,
    pub http: reqwest::Client,
    pub jwt: Jwt,
    pub client: ObjectId,
    pub token: String,
    pub cancel: CancellationToken,
    pub amqp: lapin::Connection,
}

/// An HTTP answer, read whole.
pub struct Response {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Response {
    /// `data` of a success envelope.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    /// `message` of an error envelope.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl TestApp {
    /// The callback secrets of a test API.
    pub fn callback_config() -> api::config::CallbackConfig {
        api::config::CallbackConfig {
            public_base_url: Some(PUBLIC_BASE_URL.into()),
            twilio_auth_token: Some(SecretString::from(TWILIO_AUTH_TOKEN)),
            whatsapp_verify_token: Some(SecretString::from(WHATSAPP_VERIFY_TOKEN)),
            whatsapp_app_secret: Some(SecretString::from(WHATSAPP_APP_SECRET)),
            vonage_signature_secret: Some(SecretString::from(VONAGE_SIGNATURE_SECRET)),
            vonage_signature_method: api::config::VonageSignature::Md5Hash,
        }
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(infra::topology(), &infra::amqp_url()).await
    }

    /// Starts the API with queues named by `topology` and `amqp_url` as its
    /// broker (a proxy, in outage tests).
    pub async fn spawn_with(topology: Topology, amqp_url: &str) -> Self {
        Self::spawn_configured(topology, amqp_url, fraud_guard_config(), None, Self::callback_config()).await
    }

    /// Starts the API with its own fraud guard settings, on a fresh database
    /// or on `database` (a second instance beside another).
    pub async fn spawn_guarded(guard: api::fraud::GuardConfig, database: Option<(String, sqlx::PgPool)>) -> Self {
        let callbacks = Self::callback_config();
        Self::spawn_configured(infra::topology(), &infra::amqp_url(), guard, database, callbacks).await
    }

    /// Starts the API with these callback secrets (`CallbackConfig::default()`: none).
    pub async fn spawn_with_callbacks(callbacks: api::config::CallbackConfig) -> Self {
        let (topology, amqp_url) = (infra::topology(), infra::amqp_url());
        Self::spawn_configured(topology, &amqp_url, fraud_guard_config(), None, callbacks).await
    }

    async fn spawn_configured(
        topology: Topology,
        amqp_url: &str,
        guard: api::fraud::GuardConfig,
        database: Option<(String, sqlx::PgPool)>,
        callbacks: api::config::CallbackConfig,
    ) -> Self {
        shared::telemetry::init();
        let (database_url, pool) = match database {
            Some(database) => database,
            None => infra::database().await,
        };
        let config = ApiConfig {
            common: common_config(&database_url, amqp_url),
            addr: "127.0.0.1:0".parse().expect("an address"),
            ops_addr: "127.0.0.1:0".parse().expect("an address"),
            jwt_secret: SecretString::from(JWT_SECRET),
            login_token_key: api::login_token::KeySource::Stored(webhook_secret_keys()),
            token_issuer: PUBLIC_BASE_URL.into(),
            otp_pepper: SecretString::from(PEPPER),
            relay: relay_config(),
            callbacks,
            fraud_guard: guard,
            http: api::serve::HttpConfig::default(),
            webhooks: api::config::WebhookConfig {
                keys: webhook_secret_keys(),
                allow_private: false,
                secret_overlap_seconds: 86_400,
            },
        };
        let cancel = CancellationToken::new();
        let app = Application::build(config, topology.clone(), cancel.clone())
            .await
            .expect("build the API");
        let base = format!("http://{}", app.local_addr().expect("the API's address"));
        let ops = format!("http://{}", app.ops_addr().expect("the API's OPS_ADDR"));
        tokio::spawn(app.run());
        let jwt = Jwt::new(&SecretString::from(JWT_SECRET));
        let client = create_client(&pool, "Acme").await;
        let token = jwt.client_token(&client, 0, 1).expect("a token");
        TestApp {
            base,
            ops,
            database_url,
            pool,
            topology,
            http: reqwest::Client::new(),
            jwt,
            client,
            token,
            cancel,
            amqp: infra::amqp().await,
        }
    }

    /// A running API (broker connected) with a project and a login flow of
    /// `phone` settings: (app, project id, flow id).
    pub async fn with_flow(phone: Value) -> (Self, String, String) {
        let app = Self::spawn().await;
        app.wait_for_broker().await;
        let (project, flow) = app.project_and_flow(phone).await;
        (app, project, flow)
    }

    /// Waits until the API's broker connection has declared the topology.
    pub async fn wait_for_broker(&self) {
        infra::eventually(Duration::from_secs(10), "the API to be ready", || async {
            let r = self.http.get(format!("{}/ready", self.ops)).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(())
        })
        .await;
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an HTTP answer");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response { status, body, headers }
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(reqwest::Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path, Some(&self.token), None).await
    }

    /// The API's `/ready` (on `OPS_ADDR`).
    pub async fn ready(&self) -> Response {
        let response = self.http.get(format!("{}/ready", self.ops)).send().await;
        let response = response.expect("GET /ready");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Response { status, body, headers }
    }

    /// The API's `/metrics` text (on `OPS_ADDR`).
    pub async fn metrics(&self) -> String {
        let response = self.http.get(format!("{}/metrics", self.ops)).send().await;
        response.expect("GET /metrics").text().await.expect("a metrics body")
    }

    /// A project and a login flow with `phone` settings; returns their ids.
    pub async fn project_and_flow(&self, phone: Value) -> (String, String) {
        let project = self.post("/v2/projects", json!({"name": "Verifik Client"})).await;
        assert_eq!(project.status, StatusCode::OK, "{:?}", project.body);
        let project = project.data()["_id"].as_str().expect("a project id").to_owned();
        let flow = self
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": phone}),
            )
            .await;
        assert_eq!(flow.status, StatusCode::OK, "{:?}", flow.body);
        (project, flow.data()["_id"].as_str().expect("a flow id").to_owned())
    }

    /// The seed's create body for `phone` (+507).
    pub fn create_body(project: &str, flow: &str, phone: &str) -> Value {
        json!({
            "project": project,
            "projectFlow": flow,
            "countryCode": "+507",
            "phone": phone,
            "validationMethod": "verificationCode",
            "type": "login"
        })
    }

    /// Creates a validation (the seed's body with `extra` fields over it);
    /// returns the created object.
    pub async fn create_validation_with(&self, project: &str, flow: &str, phone: &str, extra: Value) -> Value {
        let mut body = Self::create_body(project, flow, phone);
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        let response = self.post("/v2/phone-validations", body).await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        response.data().clone()
    }

    pub async fn create_validation(&self, project: &str, flow: &str, phone: &str) -> Value {
        self.create_validation_with(project, flow, phone, json!({})).await
    }

    /// Creates a validation; returns its id.
    pub async fn create_id(&self, project: &str, flow: &str, phone: &str, extra: Value) -> String {
        let created = self.create_validation_with(project, flow, phone, extra).await;
        created["_id"].as_str().expect("a validation id").to_owned()
    }

    /// The validation as the API shows it.
    pub async fn validation(&self, id: &str) -> Value {
        self.get(&format!("/v2/phone-validations/{id}")).await.data().clone()
    }

    /// Waits until the validation leaves `new`; returns the object.
    pub async fn settled(&self, id: &str) -> Value {
        infra::eventually(
            Duration::from_secs(20),
            "the validation to be sent or failed",
            || async {
                let validation = self.validation(id).await;
                (validation["status"] != "new").then_some(validation)
            },
        )
        .await
    }

    /// Does what the dispatcher does once a code is sent: stores its hash and
    /// moves the validation to `sent`.
    pub async fn store_code(&self, validation_id: &str, code: &str) {
        let hasher = OtpHasher::new(SecretString::from(PEPPER), 4);
        let hash = hasher.hash(validation_id, &OtpCode::parse(code).expect("a code"));
        let updated =
            sqlx::query("UPDATE phone_validations SET otp_hash = $2, status = 'sent' WHERE id = $1 AND status = 'new'")
                .bind(validation_id)
                .bind(hash)
                .execute(&self.pool)
                .await
                .expect("store the code");
        assert_eq!(updated.rows_affected(), 1);
    }

    /// What the fraud guard writes when it blocks `prefix` for `flow` for an
    /// hour: 40 codes sent there, `validated` of them validated.
    pub async fn block(&self, prefix: &str, flow: &str, validated: i32) {
        sqlx::query(
            "INSERT INTO fraud_blocks (id, client_id, prefix, project_flow_id, reason, sent, validated, until)
             VALUES ($1, $2, $3, $4, 'low_conversion', 40, $5, now() + interval '1 hour')",
        )
        .bind(ObjectId::new())
        .bind(&self.client)
        .bind(prefix)
        .bind(flow)
        .bind(validated)
        .execute(&self.pool)
        .await
        .expect("a block");
    }

    /// A validation for `phone` whose code `code` was sent; returns its id.
    pub async fn sent_validation(&self, project: &str, flow: &str, phone: &str, code: &str) -> String {
        let id = self.create_id(project, flow, phone, json!({})).await;
        self.store_code(&id, code).await;
        id
    }

    pub async fn validate(&self, phone: &str, otp: Value) -> Response {
        self.post(
            "/v2/phone-validations/validate",
            json!({"phone": phone, "countryCode": "+507", "otp": otp}),
        )
        .await
    }

    /// Waits until the outbox is empty: every event confirmed by RabbitMQ.
    pub async fn wait_outbox_empty(&self) {
        infra::eventually(Duration::from_secs(20), "the outbox to empty", || async {
            (self.count("outbox").await == 0).then_some(())
        })
        .await;
    }

    /// `SELECT count(*) FROM <from>` (`from` may carry a `WHERE`).
    pub async fn count(&self, from: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {from}"))
            .fetch_one(&self.pool)
            .await
            .expect("a count")
    }

    /// Once every outbox row is confirmed by RabbitMQ, the messages on `queue`.
    pub async fn published(&self, queue: &str) -> Vec<Value> {
        self.wait_outbox_empty().await;
        self.drain(queue).await
    }

    /// Every message now on `queue`, as JSON.
    pub async fn drain(&self, queue: &str) -> Vec<Value> {
        infra::drain(&self.amqp, queue)
            .await
            .into_iter()
            .map(|m| serde_json::from_slice(&m.delivery.data).expect("a JSON message"))
            .collect()
    }
}

/// A client with the test webhook secret (sealed, as otpctl stores it); returns its id.
pub async fn create_client(pool: &PgPool, name: &str) -> ObjectId {
    let id = ObjectId::new();
    let sealed = webhook_secret_keys()
        .seal(&id.to_string(), WEBHOOK_SECRET)
        .expect("seal the secret");
    sqlx::query("INSERT INTO clients (id, name, webhook_secret) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(name)
        .bind(sealed)
        .execute(pool)
        .await
        .expect("create a client");
    id
}

/// The guard as tests run it: folded and judged every 200 ms, with the
/// default grace (so a test's unvalidated burst is never judged while it
/// runs); fraud-guard tests pass their own through `spawn_guarded`.
pub fn fraud_guard_config() -> api::fraud::GuardConfig {
    api::fraud::GuardConfig {
        interval: std::time::Duration::from_millis(200),
        ..api::fraud::GuardConfig::default()
    }
}
