//! The API's test harness: `TestApp::spawn()` starts the real application on
//! port 0 against a fresh database and a private RabbitMQ namespace, with a
//! client and its token ready.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use api::auth::Jwt;
use api::config::ApiConfig;
use api::Application;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::config::CommonConfig;
use shared::otp::{OtpCode, OtpHasher};
use shared::outbox::RelayConfig;
use shared::{testkit, ObjectId};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const JWT_SECRET: &str = "test-jwt-secret";
pub const PEPPER: &str = "test-pepper";

pub struct TestApp {
    pub base: String,
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
    pub async fn spawn() -> Self {
        Self::spawn_with_amqp(testkit::amqp_url()).await
    }

    /// Starts the API with `amqp_url` as its broker (a proxy, in outage tests).
    pub async fn spawn_with_amqp(amqp_url: String) -> Self {
        shared::telemetry::init();
        let (database_url, pool) = testkit::database().await;
        let topology = testkit::topology();
        let config = ApiConfig {
            common: CommonConfig {
                database_url: SecretString::from(database_url.clone()),
                amqp_url: SecretString::from(amqp_url),
                amqp_prefix: String::new(),
                database_max_connections: 10,
            },
            addr: "127.0.0.1:0".parse().unwrap(),
            jwt_secret: SecretString::from(JWT_SECRET),
            otp_pepper: SecretString::from(PEPPER),
            relay: RelayConfig {
                sweep_interval: Duration::from_millis(200),
                sweep_after: Duration::from_secs(2),
            },
        };
        let cancel = CancellationToken::new();
        let app = Application::build(config, topology.clone(), cancel.clone())
            .await
            .expect("build app");
        let base = format!("http://{}", app.local_addr().unwrap());
        tokio::spawn(app.run());
        let jwt = Jwt::new(&SecretString::from(JWT_SECRET));
        let client = create_client(&pool, "Acme").await;
        let token = jwt.client_token(&client, 1).unwrap();
        let amqp = testkit::amqp().await;
        TestApp {
            base,
            database_url,
            pool,
            topology,
            http: reqwest::Client::new(),
            jwt,
            client,
            token,
            cancel,
            amqp,
        }
    }

    /// Waits until the API's broker connection has declared the topology.
    pub async fn wait_for_broker(&self) {
        testkit::eventually(Duration::from_secs(10), "the API to be ready", || async {
            let r = self.http.get(format!("{}/ready", self.base)).send().await.ok()?;
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
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response { status, body, headers }
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(reqwest::Method::POST, path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path, Some(&self.token.clone()), None)
            .await
    }

    /// A project and a flow with `phone` settings; returns their ids.
    pub async fn project_and_flow(&self, phone: Value) -> (String, String) {
        let project = self.post("/v2/projects", json!({"name": "Verifik Client"})).await;
        assert_eq!(project.status, StatusCode::OK, "{:?}", project.body);
        let project = project.data()["_id"].as_str().unwrap().to_owned();
        let flow = self
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": phone}),
            )
            .await;
        assert_eq!(flow.status, StatusCode::OK, "{:?}", flow.body);
        (project, flow.data()["_id"].as_str().unwrap().to_owned())
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

    pub async fn create_validation(&self, project: &str, flow: &str, phone: &str) -> Value {
        let response = self
            .post("/v2/phone-validations", Self::create_body(project, flow, phone))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        response.data().clone()
    }

    /// Does what the dispatcher does once a code is sent: stores its hash and
    /// moves the validation to `sent`.
    pub async fn store_code(&self, validation_id: &str, code: &str) {
        let hasher = OtpHasher::new(SecretString::from(PEPPER), 4);
        let hash = hasher.hash(validation_id, &OtpCode::parse(code).unwrap());
        let updated =
            sqlx::query("UPDATE phone_validations SET otp_hash = $2, status = 'sent' WHERE id = $1 AND status = 'new'")
                .bind(validation_id)
                .bind(hash)
                .execute(&self.pool)
                .await
                .unwrap();
        assert_eq!(updated.rows_affected(), 1);
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
        testkit::eventually(Duration::from_secs(20), "the outbox to empty", || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&self.pool)
                .await
                .ok()?;
            (left == 0).then_some(())
        })
        .await;
    }

    /// Every message now on `queue`, as JSON.
    pub async fn drain(&self, queue: &str) -> Vec<Value> {
        testkit::drain(&self.amqp, queue)
            .await
            .into_iter()
            .map(|m| serde_json::from_slice(&m.delivery.data).expect("JSON message"))
            .collect()
    }
}

pub async fn create_client(pool: &PgPool, name: &str) -> ObjectId {
    let id = ObjectId::new();
    sqlx::query("INSERT INTO clients (id, name, webhook_secret) VALUES ($1, $2, 'whsec_dGVzdA==')")
        .bind(&id)
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
    id
}
