//! The dispatcher's configuration, read once from the environment at start.

use secrecy::SecretString;
use shared::config::{self, CommonConfig, ConfigError};
use shared::outbox::RelayConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Where SMS go.
#[derive(Clone, Debug)]
pub enum SmsConfig {
    /// `SMS_PROVIDER=log`: print the message (code included). Development only.
    Log,
    /// `SMS_PROVIDER=twilio`.
    Twilio {
        base_url: String,
        account_sid: String,
        auth_token: SecretString,
        /// `TWILIO_FROM`, or `TWILIO_MESSAGING_SERVICE_SID` when that is set instead.
        sender: TwilioSender,
    },
}

#[derive(Clone, Debug)]
pub enum TwilioSender {
    From(String),
    MessagingService(String),
}

/// Where WhatsApp messages go.
#[derive(Clone, Debug)]
pub enum WhatsappConfig {
    Log,
    Meta {
        base_url: String,
        api_version: String,
        token: SecretString,
        phone_number_id: String,
        template: String,
    },
}

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
    /// `DISPATCH_PREFETCH`: messages in flight per process (default 256).
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
    pub sms: SmsConfig,
    pub whatsapp: WhatsappConfig,
    pub relay: RelayConfig,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
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
            otp_pepper: config::secret("OTP_PEPPER")?,
            otp_code_key: config::secret("OTP_CODE_KEY")?,
            bcrypt_cost,
            prefetch: config::parse_or("DISPATCH_PREFETCH", 256u16)?,
            hash_concurrency: config::parse_or("DISPATCH_HASH_CONCURRENCY", cores)?.max(1),
            provider_timeout: Duration::from_millis(config::parse_or("PROVIDER_TIMEOUT_MS", 5000u64)?),
            inline_retries: config::parse_or("DISPATCH_INLINE_RETRIES", 3usize)?,
            retry_schedule,
            lease: Duration::from_secs(config::parse_or("DISPATCH_LEASE_SECONDS", 10u64)?.max(1)),
            sms: sms_from_env()?,
            whatsapp: whatsapp_from_env()?,
            relay: RelayConfig::default(),
        })
    }
}

fn sms_from_env() -> Result<SmsConfig, ConfigError> {
    match config::var_or("SMS_PROVIDER", "log").as_str() {
        "log" => Ok(SmsConfig::Log),
        "twilio" => {
            let sender = match (config::var("TWILIO_MESSAGING_SERVICE_SID"), config::var("TWILIO_FROM")) {
                (Some(service), _) => TwilioSender::MessagingService(service),
                (None, Some(from)) => TwilioSender::From(from),
                (None, None) => return Err(ConfigError::Missing("TWILIO_FROM")),
            };
            Ok(SmsConfig::Twilio {
                base_url: config::var_or("TWILIO_BASE_URL", "https://api.twilio.com"),
                account_sid: config::var("TWILIO_ACCOUNT_SID").ok_or(ConfigError::Missing("TWILIO_ACCOUNT_SID"))?,
                auth_token: config::secret("TWILIO_AUTH_TOKEN")?,
                sender,
            })
        }
        other => Err(invalid(
            "SMS_PROVIDER",
            format!("expected twilio or log, got {other:?}"),
        )),
    }
}

fn whatsapp_from_env() -> Result<WhatsappConfig, ConfigError> {
    match config::var_or("WHATSAPP_PROVIDER", "log").as_str() {
        "log" => Ok(WhatsappConfig::Log),
        "meta" => Ok(WhatsappConfig::Meta {
            base_url: config::var_or("WHATSAPP_BASE_URL", "https://graph.facebook.com"),
            api_version: config::var_or("WHATSAPP_API_VERSION", "v21.0"),
            token: config::secret("WHATSAPP_TOKEN")?,
            phone_number_id: config::var("WHATSAPP_PHONE_NUMBER_ID")
                .ok_or(ConfigError::Missing("WHATSAPP_PHONE_NUMBER_ID"))?,
            template: config::var_or("WHATSAPP_TEMPLATE", "verification_code"),
        }),
        other => Err(invalid(
            "WHATSAPP_PROVIDER",
            format!("expected meta or log, got {other:?}"),
        )),
    }
}
