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

/// The shortest key accepted (`JWT_SECRET`, `OTP_PEPPER`, `OTP_CODE_KEY`):
/// 256 bits, what HMAC-SHA256 can use whole.
pub const MIN_KEY_BYTES: usize = 32;

/// A secret given as `NAME` or, for files mounted by an orchestrator, as the
/// path in `NAME_FILE` (one trailing newline dropped). `None` when neither is
/// set; both at once is refused, so no one wonders which one won.
pub fn secret_or_file(name: &'static str) -> Result<Option<SecretString>, ConfigError> {
    let file_var = format!("{name}_FILE");
    let path = std::env::var(&file_var).ok().filter(|v| !v.trim().is_empty());
    match (var(name), path) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            name,
            reason: format!("set {name} or {file_var}, not both"),
        }),
        (Some(value), None) => Ok(Some(SecretString::from(value))),
        (None, Some(path)) => {
            let content = std::fs::read_to_string(path.trim()).map_err(|e| ConfigError::Invalid {
                name,
                reason: format!("{file_var} names a file that cannot be read: {e}"),
            })?;
            let content = content.strip_suffix('\n').unwrap_or(&content);
            let content = content.strip_suffix('\r').unwrap_or(content);
            if content.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("the file {file_var} names is empty"),
                });
            }
            Ok(Some(SecretString::from(content.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// A required key (`NAME` or `NAME_FILE`) checked by [`check_key`]: the
/// process refuses to start with a short one or a placeholder.
pub fn key(name: &'static str) -> Result<SecretString, ConfigError> {
    use secrecy::ExposeSecret;
    let value = secret_or_file(name)?.ok_or(ConfigError::Missing(name))?;
    check_key(name, value.expose_secret())?;
    Ok(value)
}

/// At least [`MIN_KEY_BYTES`] bytes and not a placeholder from an example
/// file. The message never quotes the value.
pub fn check_key(name: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.len() < MIN_KEY_BYTES {
        return Err(ConfigError::Invalid {
            name,
            reason: format!(
                "must be at least {MIN_KEY_BYTES} bytes (it has {}); generate one with `openssl rand -base64 48`",
                value.len()
            ),
        });
    }
    if is_placeholder(value) {
        return Err(ConfigError::Invalid {
            name,
            reason: "is a placeholder from an example file; generate one with `openssl rand -base64 48`".into(),
        });
    }
    Ok(())
}

/// Words that mark a value copied from an example file (compared in lower
/// case with everything but letters and digits removed, so `change-me`,
/// `CHANGE_ME` and `changeme` are one), and values of fewer than 6 distinct
/// characters (`aaaa…`, `0000…`, `abcabc…`).
pub fn is_placeholder(value: &str) -> bool {
    const MARKERS: [&str; 10] = [
        "changeme",
        "changethis",
        "replaceme",
        "placeholder",
        "yoursecret",
        "secrethere",
        "keyhere",
        "notsecret",
        "insecure",
        "donotuse",
    ];
    let folded: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let distinct: std::collections::HashSet<char> = value.chars().collect();
    distinct.len() < 6 || MARKERS.iter().any(|marker| folded.contains(marker))
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
    fn short_keys_and_placeholders_are_refused_without_quoting_them() {
        let short = check_key("JWT_SECRET", "secret").unwrap_err().to_string();
        assert!(
            short.contains("JWT_SECRET") && short.contains("at least 32 bytes"),
            "{short}"
        );
        assert!(!short.contains("\"secret\""), "{short}");
        for placeholder in [
            // docker-compose.yml and .env.example as they were
            "dev-jwt-secret-change-me-dev-jwt-secret",
            "change-me-to-a-long-random-string",
            "change-me-to-another-long-random-string",
            "change-me-to-a-third-long-random-string",
            "CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME",
            "replace-me-with-32-random-bytes-please",
            "00000000000000000000000000000000000000",
        ] {
            let error = check_key("OTP_PEPPER", placeholder).unwrap_err().to_string();
            assert!(error.contains("placeholder"), "{placeholder}: {error}");
            assert!(!error.contains(placeholder), "{error}");
        }
        assert!(check_key("OTP_CODE_KEY", "Jx1tq0mG7vW3bKc9ZpL2yR5sH8nD4fA6eU0iQ").is_ok());
    }

    #[test]
    fn a_key_may_come_from_a_file_but_not_from_both() {
        // Process-wide environment: names no other test uses.
        let path = std::env::temp_dir().join(format!("otp-key-test-{}", std::process::id()));
        std::fs::write(&path, "Jx1tq0mG7vW3bKc9ZpL2yR5sH8nD4fA6eU0iQ\n").unwrap();
        std::env::set_var("CONFIG_TEST_KEY_FILE", &path);
        use secrecy::ExposeSecret;
        let key = key("CONFIG_TEST_KEY").unwrap();
        assert_eq!(key.expose_secret(), "Jx1tq0mG7vW3bKc9ZpL2yR5sH8nD4fA6eU0iQ");
        std::env::set_var("CONFIG_TEST_KEY", "Jx1tq0mG7vW3bKc9ZpL2yR5sH8nD4fA6eU0iQ");
        assert!(super::key("CONFIG_TEST_KEY")
            .unwrap_err()
            .to_string()
            .contains("not both"));
        std::env::remove_var("CONFIG_TEST_KEY");
        std::env::remove_var("CONFIG_TEST_KEY_FILE");
        let _ = std::fs::remove_file(path);
        assert!(matches!(super::key("CONFIG_TEST_KEY"), Err(ConfigError::Missing(_))));
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
