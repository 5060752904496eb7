//! A project flow's phone settings: what every validation created under the
//! flow inherits. Stored whole (JSONB) with defaults filled in.

use super::fraud::GuardMode;
use super::{Gateway, Language};
use crate::locale::{is_app_hash, is_host_name, Autofill, FlowTemplates};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The settings as stored and shown, every field present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneSettings {
    pub phone_gateway: Gateway,
    /// Digits in a code, 4..=10.
    #[schema(minimum = 4, maximum = 10)]
    pub otp_length: u8,
    /// Lifetime of a code, 60..=86400 seconds.
    #[schema(minimum = 60, maximum = 86400)]
    pub otp_expires_in_seconds: u32,
    /// Wrong codes allowed before the validation fails, 1..=20.
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: u32,
    /// Minimum gap between two codes to the same phone, 0..=86400 seconds.
    #[schema(minimum = 0, maximum = 86400)]
    pub resend_cooldown_seconds: u32,
    /// Codes per phone per rolling hour, 1..=1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_sends_per_hour: u32,
    /// The locale of the texts; absent: the request's, else the number's
    /// country's, else `en` (flows saved before 30 locales keep `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    /// Where `validated` / `failed` events are delivered (a validation's own URL wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// E.164 number → fixed code: those numbers get no message and accept that
    /// code (app-store review, demos).
    #[serde(default)]
    pub test_numbers: BTreeMap<String, String>,
    /// With gateway `whatsapp`: fall back to SMS when the number is not on WhatsApp.
    #[serde(default)]
    pub sms_fallback: bool,
    /// The channels a code goes by, in order (`sms`, `whatsapp`, `voice`,
    /// each at most once; default `[phoneGateway]`): the next one sends the
    /// same code when `channelTimeoutSeconds` pass with the validation open,
    /// or at once when the previous one failed for good.
    #[serde(default)]
    pub channels: Vec<Gateway>,
    /// Seconds between one channel's send and the next channel's, 15..=900.
    #[serde(default = "default_channel_timeout")]
    #[schema(minimum = 15, maximum = 900)]
    pub channel_timeout_seconds: u32,
    /// ISO 3166-1 alpha-2 regions numbers may belong to; empty: every country.
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    /// How eagerly prefixes that pump codes are blocked.
    #[serde(default)]
    pub fraud_guard: GuardMode,
    /// Caller-keyed limits on creates.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The flow's own texts per channel and locale (docs/contract.md §14).
    #[serde(default, skip_serializing_if = "FlowTemplates::is_empty")]
    pub templates: FlowTemplates,
    /// WebOTP: every SMS ends with `@{domain} #{code}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_otp_domain: Option<String>,
    /// Android SMS Retriever: the app's 11-character hash on its own line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub android_app_hash: Option<String>,
}

fn default_channel_timeout() -> u32 {
    60
}

/// A flow's default channels: its gateway alone (none for `none`).
fn default_channels(gateway: Gateway) -> Vec<Gateway> {
    match gateway {
        Gateway::None => Vec::new(),
        other => vec![other],
    }
}

/// `rateLimits` of a flow (docs/contract.md §9): every field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    /// Creates per value of the body's `ipAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpLimits>,
    /// The flow's sends per UTC day: a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub per_day: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub per_hour: Option<u32>,
}

impl Default for PhoneSettings {
    fn default() -> Self {
        Self {
            phone_gateway: Gateway::Sms,
            otp_length: 6,
            otp_expires_in_seconds: 600,
            max_attempts: 3,
            resend_cooldown_seconds: 60,
            max_sends_per_hour: 10,
            language: None,
            webhook_url: None,
            test_numbers: BTreeMap::new(),
            sms_fallback: false,
            channels: vec![Gateway::Sms],
            channel_timeout_seconds: default_channel_timeout(),
            allowed_countries: Vec::new(),
            fraud_guard: GuardMode::Standard,
            rate_limits: RateLimits::default(),
            templates: FlowTemplates::default(),
            web_otp_domain: None,
            android_app_hash: None,
        }
    }
}

/// The settings as a request sends them: any subset, applied over a base.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneSettingsPatch {
    pub phone_gateway: Option<Gateway>,
    #[schema(minimum = 4, maximum = 10)]
    pub otp_length: Option<u8>,
    #[schema(minimum = 60, maximum = 86400)]
    pub otp_expires_in_seconds: Option<u32>,
    /// With `maxSendsPerHour`, at most 1 % of the codes may be guessed per phone and hour.
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: Option<u32>,
    #[schema(minimum = 0, maximum = 86400)]
    pub resend_cooldown_seconds: Option<u32>,
    #[schema(minimum = 1, maximum = 1000)]
    pub max_sends_per_hour: Option<u32>,
    /// A BCP 47 tag of a built-in locale (`es-CO` is kept as `es`); `""`
    /// removes it (the number's country picks).
    #[schema(value_type = Option<String>, example = "pt-BR")]
    pub language: Option<String>,
    /// An absolute http(s) URL; `""` removes it.
    pub webhook_url: Option<String>,
    pub test_numbers: Option<BTreeMap<String, String>>,
    pub sms_fallback: Option<bool>,
    /// Ordered, each of `sms`, `whatsapp`, `voice` at most once; its first
    /// is the gateway (`phoneGateway`, if given too, must be that one).
    #[schema(min_items = 1, max_items = 3)]
    pub channels: Option<Vec<Gateway>>,
    #[schema(minimum = 15, maximum = 900)]
    pub channel_timeout_seconds: Option<u32>,
    pub allowed_countries: Option<Vec<String>>,
    pub fraud_guard: Option<GuardMode>,
    pub rate_limits: Option<RateLimits>,
    /// Replaces the flow's templates whole; `{}` removes them.
    pub templates: Option<FlowTemplates>,
    /// A host name (`login.example.com`); `""` removes it.
    pub web_otp_domain: Option<String>,
    /// 11 characters of base64; `""` removes it.
    #[schema(min_length = 0, max_length = 11)]
    pub android_app_hash: Option<String>,
}

/// A setting out of range; `0` names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {0}")]
pub struct SettingsError(pub &'static str);

fn in_range<T: PartialOrd>(
    value: T,
    range: std::ops::RangeInclusive<T>,
    field: &'static str,
) -> Result<T, SettingsError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(SettingsError(field))
    }
}

/// An absolute http(s) URL of sane length.
pub fn check_url(value: &str, field: &'static str) -> Result<(), SettingsError> {
    let parsed = url::Url::parse(value).map_err(|_| SettingsError(field))?;
    if value.len() > 2048 || !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(SettingsError(field));
    }
    Ok(())
}

impl PhoneSettingsPatch {
    /// The patch over `base`, every field checked.
    pub fn apply(self, base: PhoneSettings) -> Result<PhoneSettings, SettingsError> {
        let (phone_gateway, channels) = check_channels(self.phone_gateway, self.channels, &base)?;
        let settings = PhoneSettings {
            phone_gateway,
            channels,
            channel_timeout_seconds: in_range(
                self.channel_timeout_seconds.unwrap_or(base.channel_timeout_seconds),
                15..=900,
                "channelTimeoutSeconds",
            )?,
            otp_length: in_range(self.otp_length.unwrap_or(base.otp_length), 4..=10, "otpLength")?,
            otp_expires_in_seconds: in_range(
                self.otp_expires_in_seconds.unwrap_or(base.otp_expires_in_seconds),
                60..=86_400,
                "otpExpiresInSeconds",
            )?,
            max_attempts: in_range(self.max_attempts.unwrap_or(base.max_attempts), 1..=20, "maxAttempts")?,
            resend_cooldown_seconds: in_range(
                self.resend_cooldown_seconds.unwrap_or(base.resend_cooldown_seconds),
                0..=86_400,
                "resendCooldownSeconds",
            )?,
            max_sends_per_hour: in_range(
                self.max_sends_per_hour.unwrap_or(base.max_sends_per_hour),
                1..=1000,
                "maxSendsPerHour",
            )?,
            language: match self.language.as_deref() {
                Some("") => None,
                Some(tag) => Some(Language::parse(tag).map_err(|_| SettingsError("language"))?),
                None => base.language,
            },
            webhook_url: match self.webhook_url {
                Some(url) if url.is_empty() => None,
                Some(url) => Some(url),
                None => base.webhook_url,
            },
            test_numbers: self.test_numbers.unwrap_or(base.test_numbers),
            sms_fallback: self.sms_fallback.unwrap_or(base.sms_fallback),
            allowed_countries: match self.allowed_countries {
                Some(countries) => check_countries(countries)?,
                None => base.allowed_countries,
            },
            fraud_guard: self.fraud_guard.unwrap_or(base.fraud_guard),
            rate_limits: self.rate_limits.unwrap_or(base.rate_limits),
            templates: self.templates.unwrap_or(base.templates),
            web_otp_domain: match self.web_otp_domain {
                Some(domain) if domain.is_empty() => None,
                Some(domain) if is_host_name(&domain) => Some(domain.to_ascii_lowercase()),
                Some(_) => return Err(SettingsError("webOtpDomain")),
                None => base.web_otp_domain,
            },
            android_app_hash: match self.android_app_hash {
                Some(hash) if hash.is_empty() => None,
                Some(hash) if is_app_hash(&hash) => Some(hash),
                Some(_) => return Err(SettingsError("androidAppHash")),
                None => base.android_app_hash,
            },
        };
        check_rate_limits(&settings.rate_limits)?;
        if let Some(url) = &settings.webhook_url {
            check_url(url, "webhookUrl")?;
        }
        check_test_numbers(&settings)?;
        check_guessing_bound(&settings)?;
        // Measured without the project's name here; the API measures again
        // with it (`PhoneSettings::check_templates`).
        settings.check_templates("")?;
        Ok(settings)
    }
}

/// The gateway and the channels: given channels must be distinct sending
/// channels and start with the gateway when both are given (the gateway
/// becomes their first otherwise); a new gateway alone resets the channels
/// to it; a stored flow without channels has its gateway's.
fn check_channels(
    gateway: Option<Gateway>,
    channels: Option<Vec<Gateway>>,
    base: &PhoneSettings,
) -> Result<(Gateway, Vec<Gateway>), SettingsError> {
    const FIELD: &str = "channels";
    match channels {
        Some(channels) => {
            let Some(first) = channels.first().copied() else {
                return Err(SettingsError(FIELD));
            };
            let distinct = channels.iter().enumerate().all(|(i, c)| !channels[..i].contains(c));
            if channels.len() > 3 || !distinct || channels.contains(&Gateway::None) {
                return Err(SettingsError(FIELD));
            }
            if gateway.is_some_and(|g| g != first) {
                return Err(SettingsError(FIELD));
            }
            Ok((first, channels))
        }
        None => {
            let gateway = gateway.unwrap_or(base.phone_gateway);
            if base.channels.first() == Some(&gateway) {
                Ok((gateway, base.channels.clone()))
            } else {
                Ok((gateway, default_channels(gateway)))
            }
        }
    }
}

/// ISO 3166-1 alpha-2 codes libphonenumber knows, upper-cased and deduplicated.
fn check_countries(countries: Vec<String>) -> Result<Vec<String>, SettingsError> {
    const FIELD: &str = "allowedCountries";
    if countries.len() > 300 {
        return Err(SettingsError(FIELD));
    }
    let mut checked: Vec<String> = Vec::with_capacity(countries.len());
    for country in countries {
        let upper = country.trim().to_ascii_uppercase();
        let known = upper.len() == 2 && upper.parse::<phonenumber::country::Id>().is_ok();
        if !known {
            return Err(SettingsError(FIELD));
        }
        if !checked.contains(&upper) {
            checked.push(upper);
        }
    }
    Ok(checked)
}

/// Every limit given is 1 or more (and sane).
fn check_rate_limits(limits: &RateLimits) -> Result<(), SettingsError> {
    let check = |value: Option<u32>, max: u32, field: &'static str| match value {
        Some(n) if n == 0 || n > max => Err(SettingsError(field)),
        _ => Ok(()),
    };
    if let Some(ip) = &limits.ip_address {
        check(ip.per_minute, 100_000, "perMinute")?;
        check(ip.per_hour, 1_000_000, "perHour")?;
    }
    check(limits.per_day, 100_000_000, "perDay")
}

/// Guesses a phone can take in an hour (attempts per code × codes per hour)
/// may cover at most 1 % of the codes: with 4 digits, 3 attempts × 10 sends
/// (30 guesses of 10,000) passes and 20 × 10 does not.
fn check_guessing_bound(settings: &PhoneSettings) -> Result<(), SettingsError> {
    let guesses = u64::from(settings.max_attempts) * u64::from(settings.max_sends_per_hour);
    let codes = 10u64.pow(u32::from(settings.otp_length));
    if guesses * 100 > codes {
        return Err(SettingsError("maxSendsPerHour"));
    }
    Ok(())
}

fn check_test_numbers(settings: &PhoneSettings) -> Result<(), SettingsError> {
    const FIELD: &str = "testNumbers";
    if settings.test_numbers.len() > 100 {
        return Err(SettingsError(FIELD));
    }
    for (number, code) in &settings.test_numbers {
        let digits = number.strip_prefix('+').ok_or(SettingsError(FIELD))?;
        let number_ok = (4..=17).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        let code_ok = code.len() == usize::from(settings.otp_length) && code.bytes().all(|b| b.is_ascii_digit());
        if !number_ok || !code_ok {
            return Err(SettingsError(FIELD));
        }
    }
    Ok(())
}

impl PhoneSettings {
    /// The autofill lines every SMS of the flow ends with.
    pub fn autofill(&self) -> Autofill<'_> {
        Autofill {
            web_otp_domain: self.web_otp_domain.as_deref(),
            android_app_hash: self.android_app_hash.as_deref(),
        }
    }

    /// The templates, measured with the project's name `app` and the
    /// autofill lines (`400:invalid_templates`).
    pub fn check_templates(&self, app: &str) -> Result<(), SettingsError> {
        self.templates
            .check(app, self.autofill())
            .map_err(|_| SettingsError("templates"))
    }

    /// The fixed code of a test number, if `e164` is one.
    pub fn test_code(&self, e164: &str) -> Option<&str> {
        self.test_numbers.get(e164).map(String::as_str)
    }
}

#[cfg(test)]
mod tests;
