//! The API's configuration, read once from the environment at start.

use secrecy::SecretString;
use shared::config::{self, CommonConfig, ConfigError};
use shared::outbox::RelayConfig;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub common: CommonConfig,
    /// `API_ADDR`: where the HTTP API listens.
    pub addr: SocketAddr,
    /// `JWT_SECRET`: HS256 key for client tokens (and end-user login tokens).
    pub jwt_secret: SecretString,
    /// `OTP_PEPPER`: the key mixed into every stored code hash.
    pub otp_pepper: SecretString,
    /// `OUTBOX_SWEEP_INTERVAL_MS` / `OUTBOX_SWEEP_AFTER_MS`.
    pub relay: RelayConfig,
}

impl shared::process::Config for ApiConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn from_env() -> Result<Self, ConfigError> {
        let addr = config::var_or("API_ADDR", "127.0.0.1:8080");
        Ok(Self {
            common: CommonConfig::from_env(32)?,
            addr: addr
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name: "API_ADDR",
                    reason: e.to_string(),
                })?,
            jwt_secret: config::secret("JWT_SECRET")?,
            otp_pepper: config::secret("OTP_PEPPER")?,
            relay: RelayConfig {
                sweep_interval: Duration::from_millis(config::parse_or("OUTBOX_SWEEP_INTERVAL_MS", 1000u64)?),
                sweep_after: Duration::from_millis(config::parse_or("OUTBOX_SWEEP_AFTER_MS", 4000u64)?),
            },
        })
    }
}
