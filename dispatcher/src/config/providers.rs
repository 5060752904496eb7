//! Which providers the dispatcher sends through, read from the environment:
//! SMS providers in order of preference (`SMS_PROVIDER=twilio,vonage`), a
//! first choice per calling code (`SMS_ROUTES=+57=vonage`), the circuit
//! breaker's thresholds, and the WhatsApp provider.

use super::invalid;
use secrecy::SecretString;
use shared::config::{self, ConfigError};
use shared::domain::CountryCode;
use std::time::Duration;

/// One SMS provider.
#[derive(Clone, Debug)]
pub enum SmsProviderConfig {
    /// `log`: print the message (code included). Development only.
    Log,
    Twilio {
        base_url: String,
        account_sid: String,
        auth_token: SecretString,
        /// `TWILIO_FROM`, or `TWILIO_MESSAGING_SERVICE_SID` when that is set instead.
        sender: TwilioSender,
        /// `{PUBLIC_BASE_URL}/callbacks/twilio/status` when `PUBLIC_BASE_URL` is set.
        status_callback: Option<String>,
    },
    Vonage {
        base_url: String,
        api_key: String,
        api_secret: SecretString,
        from: String,
        /// `{PUBLIC_BASE_URL}/callbacks/vonage/status` when `PUBLIC_BASE_URL` is set.
        callback: Option<String>,
    },
}

impl SmsProviderConfig {
    pub fn name(&self) -> &'static str {
        match self {
            SmsProviderConfig::Log => "log",
            SmsProviderConfig::Twilio { .. } => "twilio",
            SmsProviderConfig::Vonage { .. } => "vonage",
        }
    }
}

#[derive(Clone, Debug)]
pub enum TwilioSender {
    From(String),
    MessagingService(String),
}

/// When a provider is skipped for a while.
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// `PROVIDER_BREAKER_FAILURES`: consecutive transient failures that open it (default 5).
    pub failures: u32,
    /// `PROVIDER_BREAKER_OPEN_MS`: how long it stays open before one probe may try (default 30000).
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The SMS providers, in order of preference, and the per-country first choices.
#[derive(Clone, Debug)]
pub struct SmsConfig {
    /// `SMS_PROVIDER`: one or more of `twilio`, `vonage`, `log`, comma-separated.
    pub providers: Vec<SmsProviderConfig>,
    /// `SMS_ROUTES`: calling code → the provider tried first for it.
    pub routes: Vec<(CountryCode, String)>,
    pub breaker: BreakerConfig,
}

impl SmsConfig {
    /// One provider, no routes, the default breaker.
    pub fn single(provider: SmsProviderConfig) -> Self {
        Self {
            providers: vec![provider],
            routes: Vec::new(),
            breaker: BreakerConfig::default(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let public = config::var("PUBLIC_BASE_URL").map(|url| url.trim_end_matches('/').to_owned());
        let mut providers = Vec::new();
        for name in config::var_or("SMS_PROVIDER", "log").split(',').map(str::trim) {
            let provider = match name {
                "log" => SmsProviderConfig::Log,
                "twilio" => twilio_from_env(public.as_deref())?,
                "vonage" => vonage_from_env(public.as_deref())?,
                other => {
                    return Err(invalid(
                        "SMS_PROVIDER",
                        format!("expected twilio, vonage or log (comma-separated), got {other:?}"),
                    ))
                }
            };
            if providers
                .iter()
                .any(|p: &SmsProviderConfig| p.name() == provider.name())
            {
                return Err(invalid("SMS_PROVIDER", format!("{name} is named twice")));
            }
            providers.push(provider);
        }
        let routes = parse_routes(&config::var_or("SMS_ROUTES", ""), &providers)?;
        let breaker = BreakerConfig {
            failures: config::parse_or("PROVIDER_BREAKER_FAILURES", 5u32)?.max(1),
            open_for: Duration::from_millis(config::parse_or("PROVIDER_BREAKER_OPEN_MS", 30_000u64)?),
        };
        Ok(Self {
            providers,
            routes,
            breaker,
        })
    }
}

/// `+57=vonage,+52=twilio`: each calling code's first choice, among `providers`.
pub fn parse_routes(raw: &str, providers: &[SmsProviderConfig]) -> Result<Vec<(CountryCode, String)>, ConfigError> {
    let mut routes = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (code, name) = entry
            .split_once('=')
            .ok_or_else(|| invalid("SMS_ROUTES", format!("{entry:?} is not +<code>=<provider>")))?;
        let code = CountryCode::parse(code.trim())
            .map_err(|_| invalid("SMS_ROUTES", format!("{code:?} is not a calling code")))?;
        let name = name.trim();
        if !providers.iter().any(|p| p.name() == name) {
            return Err(invalid(
                "SMS_ROUTES",
                format!("{name:?} is not one of SMS_PROVIDER's providers"),
            ));
        }
        routes.push((code, name.to_owned()));
    }
    Ok(routes)
}

fn twilio_from_env(public: Option<&str>) -> Result<SmsProviderConfig, ConfigError> {
    let sender = match (config::var("TWILIO_MESSAGING_SERVICE_SID"), config::var("TWILIO_FROM")) {
        (Some(service), _) => TwilioSender::MessagingService(service),
        (None, Some(from)) => TwilioSender::From(from),
        (None, None) => return Err(ConfigError::Missing("TWILIO_FROM")),
    };
    Ok(SmsProviderConfig::Twilio {
        base_url: config::var_or("TWILIO_BASE_URL", "https://api.twilio.com"),
        account_sid: config::var("TWILIO_ACCOUNT_SID").ok_or(ConfigError::Missing("TWILIO_ACCOUNT_SID"))?,
        auth_token: config::secret("TWILIO_AUTH_TOKEN")?,
        sender,
        status_callback: public.map(|base| format!("{base}/callbacks/twilio/status")),
    })
}

fn vonage_from_env(public: Option<&str>) -> Result<SmsProviderConfig, ConfigError> {
    Ok(SmsProviderConfig::Vonage {
        base_url: config::var_or("VONAGE_BASE_URL", "https://rest.nexmo.com"),
        api_key: config::var("VONAGE_API_KEY").ok_or(ConfigError::Missing("VONAGE_API_KEY"))?,
        api_secret: config::secret("VONAGE_API_SECRET")?,
        from: config::var("VONAGE_FROM").ok_or(ConfigError::Missing("VONAGE_FROM"))?,
        callback: public.map(|base| format!("{base}/callbacks/vonage/status")),
    })
}

/// Who places voice calls (`VOICE_PROVIDER`, default `log`).
#[derive(Clone, Debug)]
pub enum VoiceConfig {
    /// Print the call's TwiML (code included). Development only.
    Log,
    /// Twilio's Calls API.
    Twilio {
        base_url: String,
        account_sid: String,
        auth_token: SecretString,
        /// `TWILIO_VOICE_FROM`, default `TWILIO_FROM`: a number of the account that can call.
        from: String,
        /// `{PUBLIC_BASE_URL}/callbacks/twilio/voice` when `PUBLIC_BASE_URL` is set.
        status_callback: Option<String>,
    },
}

impl VoiceConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        match config::var_or("VOICE_PROVIDER", "log").as_str() {
            "log" => Ok(VoiceConfig::Log),
            "twilio" => {
                let public = config::var("PUBLIC_BASE_URL").map(|url| url.trim_end_matches('/').to_owned());
                Ok(VoiceConfig::Twilio {
                    base_url: config::var_or("TWILIO_BASE_URL", "https://api.twilio.com"),
                    account_sid: config::var("TWILIO_ACCOUNT_SID").ok_or(ConfigError::Missing("TWILIO_ACCOUNT_SID"))?,
                    auth_token: config::secret("TWILIO_AUTH_TOKEN")?,
                    from: config::var("TWILIO_VOICE_FROM")
                        .or_else(|| config::var("TWILIO_FROM"))
                        .ok_or(ConfigError::Missing("TWILIO_VOICE_FROM"))?,
                    status_callback: public.map(|base| format!("{base}/callbacks/twilio/voice")),
                })
            }
            other => Err(invalid(
                "VOICE_PROVIDER",
                format!("expected twilio or log, got {other:?}"),
            )),
        }
    }
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

impl WhatsappConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_known_providers_and_calling_codes() {
        let providers = [SmsProviderConfig::Log];
        let routes = parse_routes(" +57=log, +52=log ", &providers).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].0.value(), 57);
        assert!(parse_routes("+57=vonage", &providers).is_err(), "not configured");
        assert!(parse_routes("57=log", &providers).is_err());
        assert!(parse_routes("+57", &providers).is_err());
        assert!(parse_routes("", &providers).unwrap().is_empty());
    }
}
