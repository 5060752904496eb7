//! The dispatcher's harness: the real API and the real dispatcher in-process,
//! sharing a fresh database and a private RabbitMQ namespace, with wiremock
//! servers standing in for Twilio and WhatsApp.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use api::auth::Jwt;
use api::config::ApiConfig;
use dispatcher::config::{DispatcherConfig, SmsConfig, TwilioSender, WhatsappConfig};
use dispatcher::Dispatcher;
use secrecy::SecretString;
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::config::CommonConfig;
use shared::outbox::RelayConfig;
use shared::{testkit, ObjectId};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

pub const ACCOUNT: &str = "ACdeadbeefdeadbeefdeadbeefdeadbeef";
pub const FROM: &str = "+15005550006";
pub const PEPPER: &str = "test-pepper";

pub struct Harness {
    pub api: String,
    pub pool: PgPool,
    pub database_url: String,
    pub topology: Topology,
    pub http: reqwest::Client,
    pub token: String,
    pub twilio: MockServer,
    pub whatsapp: MockServer,
    pub cancel: CancellationToken,
    pub amqp: lapin::Connection,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn common(database_url: &str) -> CommonConfig {
    CommonConfig {
        database_url: SecretString::from(database_url.to_owned()),
        amqp_url: SecretString::from(testkit::amqp_url()),
        amqp_prefix: String::new(),
        database_max_connections: 10,
    }
}

fn relay() -> RelayConfig {
    RelayConfig {
        sweep_interval: Duration::from_millis(200),
        sweep_after: Duration::from_secs(2),
    }
}

impl Harness {
    /// API and stand-ins running; the dispatcher not yet (see `start_dispatcher`).
    pub async fn new() -> Self {
        Self::with_topology(testkit::topology()).await
    }

    /// With queues named by `topology` (a dispatcher process started from the
    /// binary declares its queues without the test expiry, so such tests use a
    /// plain topology and delete it at the end).
    pub async fn with_topology(topology: Topology) -> Self {
        shared::telemetry::init();
        let (database_url, pool) = testkit::database().await;
        let cancel = CancellationToken::new();
        let config = ApiConfig {
            common: common(&database_url),
            addr: "127.0.0.1:0".parse().unwrap(),
            jwt_secret: SecretString::from("jwt"),
            otp_pepper: SecretString::from(PEPPER),
            relay: relay(),
        };
        let app = api::Application::build(config, topology.clone(), cancel.clone())
            .await
            .unwrap();
        let api = format!("http://{}", app.local_addr().unwrap());
        tokio::spawn(app.run());
        let client = ObjectId::new();
        sqlx::query("INSERT INTO clients (id, name, webhook_secret) VALUES ($1, 'Acme', 'whsec_dGVzdA==')")
            .bind(&client)
            .execute(&pool)
            .await
            .unwrap();
        let token = Jwt::new(&SecretString::from("jwt")).client_token(&client, 1).unwrap();
        Self {
            api,
            pool,
            database_url,
            topology,
            http: reqwest::Client::new(),
            token,
            twilio: MockServer::start().await,
            whatsapp: MockServer::start().await,
            cancel,
            amqp: testkit::amqp().await,
        }
    }

    pub fn dispatcher_config(&self) -> DispatcherConfig {
        DispatcherConfig {
            common: common(&self.database_url),
            health_addr: "127.0.0.1:0".parse().unwrap(),
            otp_pepper: SecretString::from(PEPPER),
            bcrypt_cost: 4,
            prefetch: 64,
            hash_concurrency: 2,
            provider_timeout: Duration::from_secs(2),
            inline_retries: 3,
            retry_schedule: vec![Duration::from_secs(1), Duration::from_secs(3)],
            lease: Duration::from_secs(3),
            sms: SmsConfig::Twilio {
                base_url: self.twilio.uri(),
                account_sid: ACCOUNT.into(),
                auth_token: SecretString::from("twilio-token"),
                sender: TwilioSender::From(FROM.into()),
            },
            whatsapp: WhatsappConfig::Meta {
                base_url: self.whatsapp.uri(),
                api_version: "v21.0".into(),
                token: SecretString::from("wa-token"),
                phone_number_id: "1234567890".into(),
                template: "verification_code".into(),
            },
            relay: relay(),
        }
    }

    pub async fn start_dispatcher(&self) {
        self.start_dispatcher_with(self.dispatcher_config()).await;
    }

    pub async fn start_dispatcher_with(&self, config: DispatcherConfig) {
        let dispatcher = Dispatcher::build(config, self.topology.clone(), self.cancel.clone())
            .await
            .unwrap();
        tokio::spawn(dispatcher.run());
    }

    pub async fn post(&self, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn flow(&self, phone: Value) -> (String, String) {
        let (_, project) = self.post("/v2/projects", json!({"name": "Acme"})).await;
        let project = project["data"]["_id"].as_str().unwrap().to_owned();
        let (status, flow) = self
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": phone}),
            )
            .await;
        assert_eq!(status, 200, "{flow}");
        (project, flow["data"]["_id"].as_str().unwrap().to_owned())
    }

    pub async fn create(&self, project: &str, flow: &str, phone: &str, extra: Value) -> String {
        let mut body = json!({
            "project": project, "projectFlow": flow, "countryCode": "+507", "phone": phone,
            "validationMethod": "verificationCode", "type": "login"
        });
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        let (status, created) = self.post("/v2/phone-validations", body).await;
        assert_eq!(status, 200, "{created}");
        created["data"]["_id"].as_str().unwrap().to_owned()
    }

    /// Waits until the validation leaves `new`; returns the object.
    pub async fn settled(&self, id: &str) -> Value {
        testkit::eventually(
            Duration::from_secs(20),
            "the validation to be sent or failed",
            || async {
                let v = self.get(&format!("/v2/phone-validations/{id}")).await;
                (v["data"]["status"] != "new").then(|| v["data"].clone())
            },
        )
        .await
    }

    pub async fn validate(&self, phone: &str, otp: &str) -> (reqwest::StatusCode, Value) {
        self.post(
            "/v2/phone-validations/validate",
            json!({"phone": phone, "countryCode": "+507", "otp": otp}),
        )
        .await
    }
}

/// The form fields of a Twilio request.
pub fn form(request: &wiremock::Request) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

/// The digits of the code inside an SMS body.
pub fn code_in(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit()) && w.len() >= 4)
        .unwrap()
        .trim_end_matches('.')
        .to_owned()
}

pub fn twilio_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}
