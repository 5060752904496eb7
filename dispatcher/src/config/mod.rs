//! The dispatcher's configuration, read once from the environment at start.

mod providers;

pub use providers::{
    parse_routes, BreakerConfig, SmsConfig, SmsProviderConfig, TwilioSender, VoiceConfig, WhatsappConfig,
};

use secrecy::SecretString;
use shared::config::{self, CommonConfig, ConfigError};
use shared::outbox::RelayConfig;
use shared::store::fraud::GuardConfig;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    pub common: CommonConfig,
    /// `HEALTH_ADDR`: `/health`, `/ready`, `/metrics`.
    pub health_addr: SocketAddr,
    /// `OTP_PEPPER`.
    pub otp_pepper: SecretString,
    /// `OTP_CODE_KEY`: derives each validation's code from its id, so a
    /// repeated send repeats the code (only the dispatcher holds it).
    pub otp_code_key: SecretString,
    /// `OTP_BCRYPT_COST` (4..=31, default 4: see README, "Codes").
    pub bcrypt_cost: u32,
    /// `DISPATCH_PREFETCH`: messages in flight per process (default 1024):
    /// at a provider, waiting for a hash, a database round trip or a place in
    /// flight to a throttled provider. A send waiting on a provider costs no
    /// CPU, so this bounds a burst's rate at about
    /// prefetch / (provider latency + the rest of a send).
    pub prefetch: u16,
    /// `DISPATCH_HASH_CONCURRENCY`: hashing threads, each hashing up to 4 codes at once (default: the cores).
    pub hash_concurrency: usize,
    /// `PROVIDER_TIMEOUT_MS`: one provider request (default 5000).
    pub provider_timeout: Duration,
    /// `DISPATCH_INLINE_RETRIES`: quick retries before a message goes to a delay queue (default 3).
    pub inline_retries: usize,
    /// `DISPATCH_RETRY_SCHEDULE`: delay-queue tiers for longer outages (default `5s,30s,2m`).
    pub retry_schedule: Vec<Duration>,
    /// `DISPATCH_LEASE_SECONDS`: how long one instance owns a send before
    /// another may take it over (default 10; renewed before each retry).
    pub lease: Duration,
    /// `EARLY_RECEIPT_SWEEP_MS`: how often each instance applies the receipts
    /// a crash left unapplied and purges old ones (default 5000; see `receipts`).
    pub receipt_sweep: Duration,
    /// `EXPIRY_SWEEP_MS`: the expiry sweep's pause after a batch that was
    /// not full, jittered up to twice this (default 5000; see `expiry`).
    pub expiry_sweep: Duration,
    /// `EXPIRY_SWEEP_BATCH`: validations the expiry sweep fails per
    /// transaction (default 1000).
    pub expiry_batch: i64,
    pub sms: SmsConfig,
    pub whatsapp: WhatsappConfig,
    pub voice: VoiceConfig,
    /// `FRAUD_GUARD_*`: the guard judges a workflow's later steps as the
    /// API's upkeep judges creates (the same window, grace and block length).
    pub fraud_guard: GuardConfig,
    pub relay: RelayConfig,
}

pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

impl shared::process::Config for DispatcherConfig {
    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn from_env() -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let bcrypt_cost = config::parse_or("OTP_BCRYPT_COST", 4u32)?;
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(invalid("OTP_BCRYPT_COST", "must be 4..=31"));
        }
        let retry_schedule = config::var_or("DISPATCH_RETRY_SCHEDULE", "5s,30s,2m")
            .split(',')
            .map(config::parse_duration)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("DISPATCH_RETRY_SCHEDULE", e))?;
        if retry_schedule.is_empty() || retry_schedule.iter().any(Duration::is_zero) {
            return Err(invalid("DISPATCH_RETRY_SCHEDULE", "needs at least one non-zero delay"));
        }
        Ok(Self {
            common: CommonConfig::from_env(32)?,
            health_addr: config::var_or("HEALTH_ADDR", "127.0.0.1:9091")
                .parse()
                .map_err(|e: std::net::AddrParseError| invalid("HEALTH_ADDR", e.to_string()))?,
            otp_pepper: config::key("OTP_PEPPER")?,
            otp_code_key: config::key("OTP_CODE_KEY")?,
            bcrypt_cost,
            prefetch: config::parse_or("DISPATCH_PREFETCH", 1024u16)?.max(1),
            hash_concurrency: config::parse_or("DISPATCH_HASH_CONCURRENCY", cores)?.max(1),
            provider_timeout: Duration::from_millis(config::parse_or("PROVIDER_TIMEOUT_MS", 5000u64)?),
            inline_retries: config::parse_or("DISPATCH_INLINE_RETRIES", 3usize)?,
            retry_schedule,
            lease: Duration::from_secs(config::parse_or("DISPATCH_LEASE_SECONDS", 10u64)?.max(1)),
            receipt_sweep: Duration::from_millis(config::parse_or("EARLY_RECEIPT_SWEEP_MS", 5000u64)?.max(100)),
            expiry_sweep: Duration::from_millis(config::parse_or("EXPIRY_SWEEP_MS", 5000u64)?.max(100)),
            expiry_batch: config::parse_or("EXPIRY_SWEEP_BATCH", 1000i64)?.clamp(1, 10_000),
            sms: SmsConfig::from_env()?,
            whatsapp: WhatsappConfig::from_env()?,
            voice: VoiceConfig::from_env()?,
            fraud_guard: GuardConfig::from_env()?,
            relay: RelayConfig::default(),
        })
    }
}
