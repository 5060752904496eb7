//! The webhook worker's configuration, read once from the environment at
//! start and validated (docs/contract.md §2). Tests build it field by field.

use shared::config::{self, CommonConfig, ConfigError};
use shared::webhook_secrets::WebhookSecretKeys;
use std::net::SocketAddr;
use std::time::Duration;

/// The default `WEBHOOK_RETRY_SCHEDULE`: nine attempts over about 21 hours.
pub const DEFAULT_SCHEDULE: &str = "5s,30s,2m,10m,30m,2h,6h,12h";

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub common: CommonConfig,
    /// `WEBHOOK_SECRET_KEY` (and `WEBHOOK_SECRET_KEY_PREVIOUS` during a
    /// rotation): what clients' webhook secrets are encrypted with at rest.
    pub secret_keys: WebhookSecretKeys,
    /// `HEALTH_ADDR`: where `/health`, `/ready` and `/metrics` listen.
    pub health_addr: SocketAddr,
    /// `WEBHOOK_ALLOW_PRIVATE`: deliver to loopback, private and other
    /// non-public addresses (tests, on-premises receivers). Off by default.
    pub allow_private: bool,
    /// `WEBHOOK_TIMEOUT_MS`: the whole request, connect to last body byte.
    pub timeout: Duration,
    /// `WEBHOOK_RETRY_SCHEDULE`: the delay before each retry; its length is
    /// the number of retries (attempts = length + 1). Jitter of ±20 % is added.
    pub retry_schedule: Vec<Duration>,
    /// `WEBHOOK_PREFETCH`: deliveries in flight per worker (the broker sends no more).
    pub prefetch: u16,
    /// `WEBHOOK_PER_HOST_CONCURRENCY`: requests in flight to one host (host:port).
    pub per_host_concurrency: usize,
    /// `WEBHOOK_HOST_WAIT_MS`: the longest predicted wait for a busy host's
    /// slot that a delivery waits out; one predicted to wait longer is
    /// deferred to the first retry tier (see `hosts/mod.rs`).
    pub host_wait: Duration,
    /// What the delivery of webhook endpoints' events (docs/contract.md §13) is tuned by.
    pub endpoints: EndpointConfig,
}

/// Webhook endpoints (docs/contract.md §13): their deliveries wait in
/// PostgreSQL and every worker claims the due ones.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// `WEBHOOK_DISABLE_AFTER_HOURS` (120, fractional hours accepted): an
    /// endpoint failing for this long is disabled.
    pub disable_after: Duration,
    /// `WEBHOOK_RETENTION_DAYS` (30): messages and attempts older than this are purged.
    pub retention: Duration,
    /// `WEBHOOK_ENDPOINT_POLL_MS` (250, at most 500): how often an idle worker looks for due deliveries.
    pub poll: Duration,
    /// `WEBHOOK_ENDPOINT_CONCURRENCY` (32): requests in flight to one endpoint from one worker.
    pub per_endpoint: usize,
    /// `WEBHOOK_PURGE_INTERVAL_SECS` (600): how often a worker purges what the retention let go.
    pub purge_every: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            disable_after: Duration::from_secs(120 * 3600),
            retention: Duration::from_secs(30 * 86_400),
            poll: Duration::from_millis(250),
            per_endpoint: 32,
            purge_every: Duration::from_secs(600),
        }
    }
}

impl EndpointConfig {
    fn from_env() -> Result<Self, ConfigError> {
        let invalid = |name: &'static str, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        let hours: f64 = config::parse_or("WEBHOOK_DISABLE_AFTER_HOURS", 120.0)?;
        if !hours.is_finite() || !(0.001..=87_600.0).contains(&hours) {
            return Err(invalid("WEBHOOK_DISABLE_AFTER_HOURS", "must be 0.001 to 87600 hours"));
        }
        let days: u32 = config::parse_or("WEBHOOK_RETENTION_DAYS", 30)?;
        if !(1..=3650).contains(&days) {
            return Err(invalid("WEBHOOK_RETENTION_DAYS", "must be 1 to 3650"));
        }
        let poll_ms: u64 = config::parse_or("WEBHOOK_ENDPOINT_POLL_MS", 250)?;
        if !(10..=500).contains(&poll_ms) {
            return Err(invalid("WEBHOOK_ENDPOINT_POLL_MS", "must be 10 to 500"));
        }
        let per_endpoint: usize = config::parse_or("WEBHOOK_ENDPOINT_CONCURRENCY", 32)?;
        if !(1..=1024).contains(&per_endpoint) {
            return Err(invalid("WEBHOOK_ENDPOINT_CONCURRENCY", "must be 1 to 1024"));
        }
        let purge_secs: u64 = config::parse_or("WEBHOOK_PURGE_INTERVAL_SECS", 600)?;
        if !(1..=86_400).contains(&purge_secs) {
            return Err(invalid("WEBHOOK_PURGE_INTERVAL_SECS", "must be 1 to 86400"));
        }
        Ok(Self {
            disable_after: Duration::from_secs_f64(hours * 3600.0),
            retention: Duration::from_secs(u64::from(days) * 86_400),
            poll: Duration::from_millis(poll_ms),
            per_endpoint,
            purge_every: Duration::from_secs(purge_secs),
        })
    }
}

impl shared::process::Config for WebhookConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn from_env() -> Result<Self, ConfigError> {
        let health = config::var_or("HEALTH_ADDR", "127.0.0.1:9092");
        let schedule = config::var_or("WEBHOOK_RETRY_SCHEDULE", DEFAULT_SCHEDULE);
        let prefetch: u16 = config::parse_or("WEBHOOK_PREFETCH", 512)?;
        let per_host: usize = config::parse_or("WEBHOOK_PER_HOST_CONCURRENCY", 32)?;
        let timeout_ms: u64 = config::parse_or("WEBHOOK_TIMEOUT_MS", 10_000)?;
        let invalid = |name: &'static str, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        if prefetch == 0 {
            return Err(invalid("WEBHOOK_PREFETCH", "must be at least 1"));
        }
        if per_host == 0 {
            return Err(invalid("WEBHOOK_PER_HOST_CONCURRENCY", "must be at least 1"));
        }
        if !(100..=300_000).contains(&timeout_ms) {
            return Err(invalid("WEBHOOK_TIMEOUT_MS", "must be 100 to 300000"));
        }
        Ok(Self {
            common: CommonConfig::from_env(16)?,
            secret_keys: WebhookSecretKeys::from_env()?,
            health_addr: health
                .parse()
                .map_err(|e: std::net::AddrParseError| invalid("HEALTH_ADDR", &e.to_string()))?,
            allow_private: config::flag("WEBHOOK_ALLOW_PRIVATE", false)?,
            timeout: Duration::from_millis(timeout_ms),
            retry_schedule: parse_schedule(&schedule).map_err(|reason| invalid("WEBHOOK_RETRY_SCHEDULE", &reason))?,
            prefetch,
            per_host_concurrency: per_host,
            host_wait: Duration::from_millis(config::parse_or("WEBHOOK_HOST_WAIT_MS", 1000u64)?),
            endpoints: EndpointConfig::from_env()?,
        })
    }
}

/// `5s,30s,2m`: comma-separated delays, each at least 100 ms and at most a
/// day (RabbitMQ TTLs are milliseconds; a longer wait belongs to a replay).
pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    let delays = raw
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let delay = config::parse_duration(part)?;
            if delay < Duration::from_millis(100) || delay > Duration::from_secs(86_400) {
                return Err(format!("{part:?}: each delay must be 100ms to 24h"));
            }
            Ok(delay)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() {
        return Err("needs at least one delay".into());
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_has_eight_retries() {
        let schedule = parse_schedule(DEFAULT_SCHEDULE).unwrap();
        assert_eq!(schedule.len(), 8);
        assert_eq!(schedule[0], Duration::from_secs(5));
        assert_eq!(schedule[7], Duration::from_secs(12 * 3600));
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("10ms").is_err());
        assert!(parse_schedule("48h").is_err());
        assert_eq!(parse_schedule(" 1s, 2s ").unwrap().len(), 2);
    }
}
