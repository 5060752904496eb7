//! The secrets and settings every process under test shares: the keys the
//! test API, workers and stand-ins agree on, and the configuration they start with.

use secrecy::SecretString;
use shared::config::CommonConfig;
use shared::outbox::RelayConfig;
use std::time::Duration;

pub const JWT_SECRET: &str = "testkit-jwt-secret-3f9a1c7e5b2d8046af1e";
pub const PEPPER: &str = "testkit-otp-pepper-8c2e4a6b0d1f3957ce2a";
/// What providers are told to call back (the test API is not reachable there;
/// it only has to match what the signatures were computed over).
pub const PUBLIC_BASE_URL: &str = "https://otp.example.com";
pub const TWILIO_AUTH_TOKEN: &str = "twilio-token";
pub const WHATSAPP_VERIFY_TOKEN: &str = "wa-verify";
pub const WHATSAPP_APP_SECRET: &str = "wa-app-secret";
pub const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature";
/// The webhook secret `create_client` gives every test client ("test", base64).
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdA==";
/// `WEBHOOK_SECRET_KEY` of every process under test (32 bytes, base64).
pub const WEBHOOK_SECRET_KEY: &str = "dGVzdGtpdC13ZWJob29rLXNlY3JldC1rZXktMDEyMzQ=";

/// The keys clients' webhook secrets are sealed with in tests.
pub fn webhook_secret_keys() -> shared::webhook_secrets::WebhookSecretKeys {
    let key = shared::webhook_secrets::parse_key("WEBHOOK_SECRET_KEY", WEBHOOK_SECRET_KEY).expect("the test key");
    shared::webhook_secrets::WebhookSecretKeys::new(&key, None)
}

/// The settings every process under test shares: this database, this broker.
pub fn common_config(database_url: &str, amqp_url: &str) -> CommonConfig {
    CommonConfig {
        database_url: SecretString::from(database_url.to_owned()),
        amqp_url: SecretString::from(amqp_url.to_owned()),
        amqp_prefix: String::new(),
        database_max_connections: 10,
    }
}

/// An outbox relay that sweeps quickly, so tests need not wait for it.
pub fn relay_config() -> RelayConfig {
    RelayConfig {
        sweep_interval: Duration::from_millis(200),
        sweep_after: Duration::from_secs(2),
    }
}
