//! The API's configuration, read once from the environment at start.

use crate::login_token::{KeySource, LoginKey};
use secrecy::SecretString;
use shared::config::{self, CommonConfig, ConfigError};
use shared::outbox::RelayConfig;
use shared::webhook_secrets::WebhookSecretKeys;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub common: CommonConfig,
    /// `API_ADDR`: where the HTTP API listens (with `/health`).
    pub addr: SocketAddr,
    /// `OPS_ADDR`: where `/health`, `/ready` and `/metrics` listen, apart
    /// from the public port so that the process's internals are not shown
    /// to whoever reaches the API.
    pub ops_addr: SocketAddr,
    /// `JWT_SECRET` (or `JWT_SECRET_FILE`): HS256 key for client tokens; at
    /// least 32 bytes, never a placeholder.
    pub jwt_secret: SecretString,
    /// Where the key of end users' login tokens comes from:
    /// `LOGIN_TOKEN_KEY` (or `LOGIN_TOKEN_KEY_FILE`; Ed25519, PKCS#8 PEM or
    /// its base64 body on one line) when set; otherwise the keys stored in
    /// PostgreSQL, sealed with `WEBHOOK_SECRET_KEY` (and
    /// `WEBHOOK_SECRET_KEY_PREVIOUS` during its rotation), which is then required.
    pub login_token_key: KeySource,
    /// `TOKEN_ISSUER`: login tokens' `iss` (default `PUBLIC_BASE_URL`, else `otp-service`).
    pub token_issuer: String,
    /// `OTP_PEPPER` (or `OTP_PEPPER_FILE`): the key mixed into every stored code hash.
    pub otp_pepper: SecretString,
    /// `OUTBOX_SWEEP_INTERVAL_MS` / `OUTBOX_SWEEP_AFTER_MS`.
    pub relay: RelayConfig,
    /// What the providers' status callbacks are checked with.
    pub callbacks: CallbackConfig,
    /// `FRAUD_GUARD_*`: grace, block length, window and judging interval.
    pub fraud_guard: crate::fraud::GuardConfig,
    /// `HTTP_*`: timeouts and the connection limit of the server.
    pub http: crate::serve::HttpConfig,
    /// Webhook endpoints (docs/contract.md §13): sealing their secrets,
    /// checking their URLs, the overlap of a rotation.
    pub webhooks: WebhookConfig,
}

/// What the webhook endpoints' routes need.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `WEBHOOK_SECRET_KEY` (required; `WEBHOOK_SECRET_KEY_PREVIOUS` during
    /// its rotation): endpoints' secrets are sealed with it, the endpoint id
    /// as associated data, as the webhook worker opens them.
    pub keys: WebhookSecretKeys,
    /// `WEBHOOK_ALLOW_PRIVATE` (default `false`): accept endpoint URLs on
    /// loopback and private addresses (tests, on-premises), as the worker's
    /// variable of the same name delivers to them. Set both alike.
    pub allow_private: bool,
    /// `WEBHOOK_SECRET_OVERLAP_SECONDS` (default 86400, 0..=2592000): how
    /// long an endpoint's previous secret keeps signing after a rotation.
    pub secret_overlap_seconds: i64,
}

impl WebhookConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let overlap: i64 = config::parse_or("WEBHOOK_SECRET_OVERLAP_SECONDS", 86_400)?;
        if !(0..=30 * 86_400).contains(&overlap) {
            return Err(ConfigError::Invalid {
                name: "WEBHOOK_SECRET_OVERLAP_SECONDS",
                reason: format!("expected 0..=2592000 seconds, got {overlap}"),
            });
        }
        Ok(Self {
            keys: WebhookSecretKeys::from_env()?,
            allow_private: config::flag("WEBHOOK_ALLOW_PRIVATE", false)?,
            secret_overlap_seconds: overlap,
        })
    }
}

/// The secrets that prove a status callback comes from its provider. A
/// callback whose secret is not configured is refused (403): nothing
/// unauthenticated changes a record.
#[derive(Clone, Debug, Default)]
pub struct CallbackConfig {
    /// `PUBLIC_BASE_URL`: the address providers reach the API at; Twilio
    /// signs the full URL it called, so the check needs it.
    pub public_base_url: Option<String>,
    /// `TWILIO_AUTH_TOKEN`: the key of `X-Twilio-Signature`.
    pub twilio_auth_token: Option<SecretString>,
    /// `WHATSAPP_VERIFY_TOKEN`: what Meta's subscription handshake must echo.
    pub whatsapp_verify_token: Option<SecretString>,
    /// `WHATSAPP_APP_SECRET`: the key of `X-Hub-Signature-256`.
    pub whatsapp_app_secret: Option<SecretString>,
    /// `VONAGE_SIGNATURE_SECRET`: the key of the `sig` every delivery receipt must carry.
    pub vonage_signature_secret: Option<SecretString>,
    /// `VONAGE_SIGNATURE_METHOD`: `md5hash` (Vonage's default) or `sha256` (HMAC).
    pub vonage_signature_method: VonageSignature,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VonageSignature {
    #[default]
    Md5Hash,
    Sha256Hmac,
}

impl CallbackConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let optional = |name| config::var(name).map(SecretString::from);
        let method = match config::var_or("VONAGE_SIGNATURE_METHOD", "md5hash").as_str() {
            "md5hash" => VonageSignature::Md5Hash,
            "sha256" => VonageSignature::Sha256Hmac,
            other => {
                return Err(ConfigError::Invalid {
                    name: "VONAGE_SIGNATURE_METHOD",
                    reason: format!("expected md5hash or sha256, got {other:?}"),
                })
            }
        };
        Ok(Self {
            public_base_url: config::var("PUBLIC_BASE_URL").map(|url| url.trim_end_matches('/').to_owned()),
            twilio_auth_token: optional("TWILIO_AUTH_TOKEN"),
            whatsapp_verify_token: optional("WHATSAPP_VERIFY_TOKEN"),
            whatsapp_app_secret: optional("WHATSAPP_APP_SECRET"),
            vonage_signature_secret: optional("VONAGE_SIGNATURE_SECRET"),
            vonage_signature_method: method,
        })
    }
}

impl shared::process::Config for ApiConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn from_env() -> Result<Self, ConfigError> {
        let addr = config::var_or("API_ADDR", "127.0.0.1:8080");
        let ops_addr = config::var_or("OPS_ADDR", "127.0.0.1:8081");
        let login_token_key = config::secret_or_file("LOGIN_TOKEN_KEY")?
            .map(|pem| LoginKey::from_pem(&pem))
            .transpose()
            .map_err(|e| ConfigError::Invalid {
                name: "LOGIN_TOKEN_KEY",
                reason: e.to_string(),
            })?;
        let callbacks = CallbackConfig::from_env()?;
        let jwt_secret = config::key("JWT_SECRET")?;
        let otp_pepper = config::key("OTP_PEPPER")?;
        let webhooks = WebhookConfig::from_env()?;
        let login_token_key = match login_token_key {
            Some(key) => KeySource::Configured(key),
            None => KeySource::Stored(webhooks.keys.clone()),
        };
        let token_issuer = config::var("TOKEN_ISSUER")
            .or_else(|| callbacks.public_base_url.clone())
            .unwrap_or_else(|| "otp-service".to_owned());
        Ok(Self {
            common: CommonConfig::from_env(32)?,
            addr: addr
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name: "API_ADDR",
                    reason: e.to_string(),
                })?,
            ops_addr: ops_addr
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name: "OPS_ADDR",
                    reason: e.to_string(),
                })?,
            jwt_secret,
            otp_pepper,
            login_token_key,
            token_issuer,
            callbacks,
            fraud_guard: crate::fraud::GuardConfig::from_env()?,
            http: crate::serve::HttpConfig::from_env()?,
            webhooks,
            relay: RelayConfig {
                sweep_interval: Duration::from_millis(config::parse_or("OUTBOX_SWEEP_INTERVAL_MS", 1000u64)?),
                sweep_after: Duration::from_millis(config::parse_or("OUTBOX_SWEEP_AFTER_MS", 4000u64)?),
            },
        })
    }
}
