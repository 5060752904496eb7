//! The dispatcher under test: the real API and the real dispatcher
//! in-process, sharing a fresh database and a private RabbitMQ namespace,
//! with wiremock servers standing in for Twilio and WhatsApp.

use crate::api::{common_config, relay_config, TestApp, PEPPER};
use crate::infra;
use crate::process::Running;
use dispatcher::config::{DispatcherConfig, SmsConfig, SmsProviderConfig, TwilioSender, VoiceConfig, WhatsappConfig};
use dispatcher::Dispatcher;
use secrecy::SecretString;
use serde_json::Value;
use shared::amqp::Topology;
use shared::process::Service;
use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const ACCOUNT: &str = "ACdeadbeefdeadbeefdeadbeefdeadbeef";
pub const FROM: &str = "+15005550006";
/// The number calls come from (`TWILIO_VOICE_FROM`).
pub const VOICE_FROM: &str = "+15005550007";
pub const VONAGE_KEY: &str = "vonage-key";
pub const VONAGE_SECRET: &str = "vonage-secret";
/// The dispatcher's code key in tests.
pub const CODE_KEY: &str = "testkit-otp-code-key-5d7f9b1a3c6e8024bd4f";

/// The API, the provider stand-ins, and dispatchers on demand.
pub struct Harness {
    pub app: TestApp,
    pub twilio: MockServer,
    pub vonage: MockServer,
    pub whatsapp: MockServer,
}

impl Deref for Harness {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Harness {
    /// API and stand-ins running; the dispatcher not yet (see `start_dispatcher`).
    pub async fn new() -> Self {
        Self::with_topology(infra::topology()).await
    }

    /// With queues named by `topology` (a dispatcher process started from the
    /// binary declares its queues without the test expiry, so such tests use
    /// a plain topology and delete it at the end).
    pub async fn with_topology(topology: Topology) -> Self {
        Self::with_app(TestApp::spawn_with(topology, &infra::amqp_url()).await).await
    }

    /// Around an API started elsewhere (with its own settings).
    pub async fn with_app(app: TestApp) -> Self {
        Self {
            app,
            twilio: MockServer::start().await,
            vonage: MockServer::start().await,
            whatsapp: MockServer::start().await,
        }
    }

    pub fn dispatcher_config(&self) -> DispatcherConfig {
        DispatcherConfig {
            common: common_config(&self.app.database_url, &infra::amqp_url()),
            health_addr: "127.0.0.1:0".parse().expect("an address"),
            otp_pepper: SecretString::from(PEPPER),
            otp_code_key: SecretString::from(CODE_KEY),
            bcrypt_cost: 4,
            prefetch: 64,
            hash_concurrency: 2,
            provider_timeout: Duration::from_secs(2),
            inline_retries: 3,
            retry_schedule: vec![Duration::from_secs(1), Duration::from_secs(3)],
            lease: Duration::from_secs(3),
            receipt_sweep: Duration::from_millis(500),
            expiry_sweep: Duration::from_millis(200),
            expiry_batch: 1000,
            sms: SmsConfig::single(self.twilio_config()),
            whatsapp: WhatsappConfig::Meta {
                base_url: self.whatsapp.uri(),
                api_version: "v21.0".into(),
                token: SecretString::from("wa-token"),
                phone_number_id: "1234567890".into(),
                template: "verification_code".into(),
            },
            voice: self.voice_config(),
            fraud_guard: shared::store::fraud::GuardConfig::default(),
            relay: relay_config(),
        }
    }

    /// Twilio, pointed at its stand-in.
    pub fn twilio_config(&self) -> SmsProviderConfig {
        twilio_config_at(self.twilio.uri())
    }

    /// Twilio's Calls API, pointed at the Twilio stand-in (calls are told
    /// apart from messages by their path: [`twilio_calls_path`]).
    pub fn voice_config(&self) -> VoiceConfig {
        VoiceConfig::Twilio {
            base_url: self.twilio.uri(),
            account_sid: ACCOUNT.into(),
            auth_token: SecretString::from("twilio-token"),
            from: VOICE_FROM.into(),
            status_callback: None,
        }
    }

    /// Every call the Twilio stand-in was asked to place, as form fields.
    pub async fn call_requests(&self) -> Vec<HashMap<String, String>> {
        self.twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == twilio_calls_path())
            .map(form)
            .collect()
    }

    /// Vonage, pointed at its stand-in.
    pub fn vonage_config(&self) -> SmsProviderConfig {
        SmsProviderConfig::Vonage {
            base_url: self.vonage.uri(),
            api_key: VONAGE_KEY.into(),
            api_secret: SecretString::from(VONAGE_SECRET),
            from: "Acme".into(),
            callback: None,
        }
    }

    pub async fn start_dispatcher(&self) {
        self.start_dispatcher_with(self.dispatcher_config()).await;
    }

    /// Starts a dispatcher that sends SMS by Twilio first, Vonage next.
    pub async fn start_twilio_then_vonage(&self) {
        let mut config = self.dispatcher_config();
        config.sms = SmsConfig {
            providers: vec![self.twilio_config(), self.vonage_config()],
            routes: Vec::new(),
            breaker: dispatcher::config::BreakerConfig::default(),
        };
        self.start_dispatcher_with(config).await;
    }

    pub async fn start_dispatcher_with(&self, config: DispatcherConfig) {
        let dispatcher = Dispatcher::build(config, self.app.topology.clone(), self.app.cancel.clone())
            .await
            .expect("build the dispatcher");
        tokio::spawn(dispatcher.run());
    }

    /// The dispatcher binary as a child process on this harness's database,
    /// queues (`AMQP_PREFIX` = `prefix`) and Twilio stand-in; `extra`
    /// variables are added or override.
    pub fn start_dispatcher_binary(&self, binary: &str, prefix: &str, extra: &[(&str, String)]) -> Running {
        let mut env = vec![
            ("DATABASE_URL", self.app.database_url.clone()),
            ("AMQP_URL", infra::amqp_url()),
            ("AMQP_PREFIX", prefix.to_owned()),
            ("HEALTH_ADDR", "127.0.0.1:0".into()),
            ("OTP_PEPPER", PEPPER.into()),
            ("OTP_CODE_KEY", CODE_KEY.into()),
            ("DISPATCH_PREFETCH", "32".into()),
            ("DISPATCH_RETRY_SCHEDULE", "1s,3s".into()),
            ("SMS_PROVIDER", "twilio".into()),
            ("TWILIO_BASE_URL", self.twilio.uri()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT.into()),
            ("TWILIO_AUTH_TOKEN", "twilio-token".into()),
            ("TWILIO_FROM", FROM.into()),
        ];
        env.extend(extra.iter().cloned());
        Running::start(binary, &env)
    }

    /// Scripts the Twilio stand-in: each of `first` answers one request, in
    /// order; `then` answers every request after them.
    pub async fn sms_answers(&self, first: impl IntoIterator<Item = ResponseTemplate>, then: ResponseTemplate) {
        for answer in first {
            Mock::given(method("POST"))
                .respond_with(answer)
                .up_to_n_times(1)
                .mount(&self.twilio)
                .await;
        }
        Mock::given(method("POST")).respond_with(then).mount(&self.twilio).await;
    }

    /// Fails the test (when the harness drops) if any message reaches a provider.
    pub async fn expect_no_messages(&self) {
        for server in [&self.twilio, &self.whatsapp] {
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(500))
                .expect(0)
                .mount(server)
                .await;
        }
    }

    /// A dispatcher, a flow with `settings`, and one validation for `phone`
    /// (with `extra` create fields) that has left `new`: (id, object).
    pub async fn send_one(&self, settings: Value, phone: &str, extra: Value) -> (String, Value) {
        self.start_dispatcher().await;
        let (project, flow) = self.app.project_and_flow(settings).await;
        let id = self.app.create_id(&project, &flow, phone, extra).await;
        let settled = self.app.settled(&id).await;
        (id, settled)
    }

    /// The E.164 numbers whose validations are recorded as `sent`.
    pub async fn recorded_sends(&self) -> std::collections::HashSet<String> {
        sqlx::query_scalar::<_, String>("SELECT country_code || phone FROM phone_validations WHERE status = 'sent'")
            .fetch_all(&self.app.pool)
            .await
            .expect("the sent validations")
            .into_iter()
            .collect()
    }

    /// Publishes `copies` copies of `message` to the exchange under
    /// `routing_key`, as duplicates or a redelivery would reach the dispatcher.
    pub async fn publish_copies(&self, routing_key: &str, message: &Value, copies: usize) {
        let channel = self.app.amqp.create_channel().await.expect("a channel");
        let payload = serde_json::to_vec(message).expect("a message");
        for _ in 0..copies {
            channel
                .basic_publish(
                    self.app.topology.exchange().as_str().into(),
                    routing_key.into(),
                    Default::default(),
                    &payload,
                    Default::default(),
                )
                .await
                .expect("published");
        }
        let _ = channel.close(200, "published".into()).await;
    }

    /// Ready messages in the queue `name` (`None`: not declared yet).
    pub async fn ready_in(&self, name: &str) -> Option<u32> {
        infra::ready_in(&self.app.amqp, name).await
    }

    /// Every message the Twilio stand-in received, as form fields.
    pub async fn sms_requests(&self) -> Vec<HashMap<String, String>> {
        self.twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() != twilio_calls_path())
            .map(form)
            .collect()
    }
}

/// Twilio, pointed at a stand-in at `base_url`.
pub fn twilio_config_at(base_url: String) -> SmsProviderConfig {
    SmsProviderConfig::Twilio {
        base_url,
        account_sid: ACCOUNT.into(),
        auth_token: SecretString::from("twilio-token"),
        sender: TwilioSender::From(FROM.into()),
        status_callback: None,
    }
}

/// Twilio's answer to an accepted message.
pub fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": sid, "status": "queued"}))
}

/// The form fields of a Twilio request.
pub fn form(request: &wiremock::Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

/// The digits of the code inside an SMS body: the first run of 4 or more
/// ASCII digits, whatever surrounds it (Chinese and Japanese texts put no
/// space around the code).
pub fn code_in(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 4)
        .expect("a code in the message")
        .to_owned()
}

pub fn twilio_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

/// A stand-in's answer that notes when each request arrived, for tests that
/// assert on the spacing of requests rather than on how many fit in a time.
pub struct Stamped {
    pub at: std::sync::Arc<std::sync::Mutex<Vec<chrono::DateTime<chrono::Utc>>>>,
    pub template: ResponseTemplate,
}

impl Stamped {
    pub fn new(template: ResponseTemplate) -> Self {
        Self {
            at: Default::default(),
            template,
        }
    }

    /// When each request arrived so far, in order.
    pub fn stamps(at: &std::sync::Mutex<Vec<chrono::DateTime<chrono::Utc>>>) -> Vec<chrono::DateTime<chrono::Utc>> {
        at.lock().expect("stamps lock").clone()
    }
}

impl wiremock::Respond for Stamped {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.at.lock().expect("stamps lock").push(chrono::Utc::now());
        self.template.clone()
    }
}

pub fn twilio_calls_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json")
}

/// The digits a call's TwiML reads (`1, 2, 3, …`), said the first time.
pub fn code_in_twiml(twiml: &str) -> String {
    let say = twiml
        .split("<Say")
        .nth(1)
        .and_then(|s| s.split_once('>'))
        .map(|(_, rest)| rest.split("</Say>").next().unwrap_or(""))
        .expect("a <Say> in the TwiML");
    let digits: Vec<&str> = say
        .split([',', ' ', '.'])
        .filter(|w| w.len() == 1 && w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(digits.len() >= 4, "a code read digit by digit in {twiml}");
    digits.concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_code_is_found_with_or_without_spaces_around_it() {
        assert_eq!(
            super::code_in("Your Acme verification code is 123456. It expires in 10 minutes."),
            "123456"
        );
        assert_eq!(super::code_in("您的Acme验证码是1234567，10分钟内有效。"), "1234567");
        assert_eq!(super::code_in("Acmeの認証コードは0042です。"), "0042");
    }
}
