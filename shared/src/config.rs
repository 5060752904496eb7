//! Reading configuration from the environment (and a `.env` file, if any).
//! Each process has one config struct built from these helpers at start.

use secrecy::SecretString;
use std::str::FromStr;

/// What is wrong with the environment; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads `.env` from the working directory if there is one.
pub fn load_dotenv() {
    // A missing .env is the normal case in production.
    let _ = dotenvy::dotenv();
}

/// The variable's value, `None` when unset or empty.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn var_or(name: &'static str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// Parses the variable, or returns `default` when unset.
pub fn parse_or<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

/// A required secret: refuses to start without it.
pub fn secret(name: &'static str) -> Result<SecretString, ConfigError> {
    var(name).map(SecretString::from).ok_or(ConfigError::Missing(name))
}

/// A `bool` written `true`/`false`/`1`/`0`.
pub fn flag(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

/// Parses `5s`, `250ms`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{raw:?} is not a duration"))?;
    let millis = match unit {
        "ms" => value,
        "" | "s" => value.saturating_mul(1000),
        "m" => value.saturating_mul(60_000),
        "h" => value.saturating_mul(3_600_000),
        _ => return Err(format!("{raw:?}: unit must be ms, s, m or h")),
    };
    Ok(std::time::Duration::from_millis(millis))
}

/// `AMQP_URL`, checked: one AMQP URL or several, comma-separated, every
/// entry well-formed (a typo in one node's URL would otherwise show only
/// when the process fails over to that node).
fn amqp_url(raw: String) -> Result<SecretString, ConfigError> {
    crate::amqp::parse_url_list(&raw).map_err(|error| ConfigError::Invalid {
        name: "AMQP_URL",
        reason: error.to_string(),
    })?;
    Ok(SecretString::from(raw))
}

/// The settings every process shares.
#[derive(Clone, Debug)]
pub struct CommonConfig {
    /// `DATABASE_URL`: PostgreSQL.
    pub database_url: SecretString,
    /// `AMQP_URL`: RabbitMQ; one URL, or the nodes of a cluster separated by
    /// commas (checked at start: every entry must be an AMQP URL).
    pub amqp_url: SecretString,
    /// `AMQP_PREFIX`: prepended to every exchange and queue name (default empty),
    /// so several environments can share one broker.
    pub amqp_prefix: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    pub database_max_connections: u32,
}

impl CommonConfig {
    pub fn from_env(default_pool: u32) -> Result<Self, ConfigError> {
        let amqp_url = amqp_url(var_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))?;
        Ok(Self {
            database_url: SecretString::from(var_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/otp")),
            amqp_url,
            amqp_prefix: var_or("AMQP_PREFIX", ""),
            database_max_connections: parse_or("DATABASE_MAX_CONNECTIONS", default_pool)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn amqp_url_takes_a_list_and_refuses_a_malformed_entry() {
        use secrecy::ExposeSecret;
        let list = "amqp://u:p@a:5672/%2f, amqp://u:p@b:5672/%2f";
        assert_eq!(amqp_url(list.to_owned()).unwrap().expose_secret(), list);
        let error = amqp_url("amqp://u:pw@a:5672/%2f,amqp://u:pw@b:x/%2f".to_owned()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("environment variable AMQP_URL is invalid: entry 2 of 2"),
            "{message}"
        );
        assert!(!message.contains("pw"), "{message}");
        assert!(amqp_url(" , ".to_owned()).is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
    }
}
