//! Clients' webhook signing secrets, encrypted at rest with
//! `WEBHOOK_SECRET_KEY` (XChaCha20-Poly1305, a random 192-bit nonce per
//! value, the client id as associated data so a sealed secret cannot be
//! moved to another client). A stored value reads
//! `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`; the key id (the
//! first 4 bytes of SHA-256 of the key, hex) says which key sealed it, so
//! the key can be rotated: `WEBHOOK_SECRET_KEY_PREVIOUS` still opens what the
//! old key sealed, and [`reseal_all`] moves every row to the current key.
//! A value without the prefix is plaintext: from before encryption, or
//! written by whoever can write to the database, who would then know the
//! key that signs the tenant's webhooks. It is refused, unless
//! `WEBHOOK_ACCEPT_PLAINTEXT_SECRETS` is on for the one upgrade from a
//! version that stored plaintext: then it opens, and [`reseal_all`] (run by
//! the webhook worker at start) encrypts it.
//! The same keys seal the API's stored login-token keys
//! ([`WebhookSecretKeys::seal_bytes`], with their own associated data).

use crate::config::{self, ConfigError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

const UNSEALED: &str = "SELECT id, webhook_secret, previous_webhook_secret FROM clients
          WHERE webhook_secret NOT LIKE $1 OR previous_webhook_secret NOT LIKE $1";
const RESEAL: &str = "UPDATE clients SET webhook_secret = $2, previous_webhook_secret = $3
              WHERE id = $1 AND webhook_secret = $4 AND previous_webhook_secret IS NOT DISTINCT FROM $5";

const PREFIX: &str = "enc:v1:";
const NONCE_BYTES: usize = 24;

/// One 32-byte key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        Self {
            id: hex::encode(&Sha256::digest(bytes)[..4]),
            cipher: XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(bytes)),
        }
    }
}

/// The current key (seals and opens) and, during a rotation, the previous
/// one (opens only).
#[derive(Clone)]
pub struct WebhookSecretKeys {
    current: Key,
    previous: Option<Key>,
    /// `WEBHOOK_ACCEPT_PLAINTEXT_SECRETS`: plaintext values open (and are
    /// sealed by [`reseal_all`]). Off by default.
    accept_plaintext: bool,
}

impl std::fmt::Debug for WebhookSecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecretKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .field("accept_plaintext", &self.accept_plaintext)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the secret was sealed with key {0}, which is neither WEBHOOK_SECRET_KEY nor WEBHOOK_SECRET_KEY_PREVIOUS")]
    UnknownKey(String),
    #[error("the sealed secret is malformed or was altered")]
    Corrupt,
    #[error("the secret could not be encrypted")]
    Seal,
    #[error(
        "the stored secret is not sealed (anyone who can write to the database could have set it); \
         issue a new one with `otpctl client rotate-secret`, or, upgrading from a version that stored \
         secrets in plaintext, start the webhook worker once with WEBHOOK_ACCEPT_PLAINTEXT_SECRETS=true"
    )]
    Plaintext,
}

/// 32 bytes written as base64 (44 characters) or hex (64), checked like
/// every other key (no placeholder); the message never quotes the value.
pub fn parse_key(name: &'static str, raw: &str) -> Result<[u8; 32], ConfigError> {
    let raw = raw.trim();
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: reason.to_owned(),
    };
    config::check_key(name, raw)?;
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(raw).map_err(|_| invalid("not valid hex"))?
    } else {
        STANDARD
            .decode(raw)
            .map_err(|_| invalid("must be 32 bytes as base64 or hex (`openssl rand -base64 32`)"))?
    };
    // `base64("change-me-…")` is still a placeholder.
    if std::str::from_utf8(&bytes).is_ok_and(config::is_placeholder) {
        return Err(invalid(
            "is a placeholder from an example file; generate one with `openssl rand -base64 32`",
        ));
    }
    bytes
        .try_into()
        .map_err(|_| invalid("must be exactly 32 bytes (`openssl rand -base64 32`)"))
}

impl WebhookSecretKeys {
    /// Keys that refuse plaintext values.
    pub fn new(current: &[u8; 32], previous: Option<&[u8; 32]>) -> Self {
        Self {
            current: Key::new(current),
            previous: previous.map(Key::new),
            accept_plaintext: false,
        }
    }

    /// Whether plaintext values open (the upgrade window only).
    pub fn accepting_plaintext(mut self, accept: bool) -> Self {
        self.accept_plaintext = accept;
        self
    }

    /// `WEBHOOK_SECRET_KEY` (required) and `WEBHOOK_SECRET_KEY_PREVIOUS`, or
    /// their `_FILE` variants, and `WEBHOOK_ACCEPT_PLAINTEXT_SECRETS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let current =
            config::secret_or_file("WEBHOOK_SECRET_KEY")?.ok_or(ConfigError::Missing("WEBHOOK_SECRET_KEY"))?;
        let current = parse_key("WEBHOOK_SECRET_KEY", current.expose_secret())?;
        let previous = config::secret_or_file("WEBHOOK_SECRET_KEY_PREVIOUS")?
            .map(|raw| parse_key("WEBHOOK_SECRET_KEY_PREVIOUS", raw.expose_secret()))
            .transpose()?;
        let accept_plaintext = config::flag("WEBHOOK_ACCEPT_PLAINTEXT_SECRETS", false)?;
        Ok(Self::new(&current, previous.as_ref()).accepting_plaintext(accept_plaintext))
    }

    /// Whether plaintext values are accepted (`WEBHOOK_ACCEPT_PLAINTEXT_SECRETS`).
    pub fn accepts_plaintext(&self) -> bool {
        self.accept_plaintext
    }

    /// The id stored values sealed with the current key carry.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn aad(client: &str) -> Vec<u8> {
        format!("otp-webhook-secret:{client}").into_bytes()
    }

    /// The value to store for `client`'s secret.
    pub fn seal(&self, client: &str, secret: &str) -> Result<String, OpenError> {
        self.seal_bytes(&Self::aad(client), secret.as_bytes())
    }

    /// The plain secret behind a stored value. A plaintext value is
    /// refused, or returned as it is while plaintext is accepted.
    pub fn open(&self, client: &str, stored: &str) -> Result<SecretString, OpenError> {
        if !stored.starts_with(PREFIX) {
            if !self.accept_plaintext {
                return Err(OpenError::Plaintext);
            }
            return Ok(SecretString::from(stored.to_owned()));
        }
        let plain = self.open_bytes(&Self::aad(client), stored)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| OpenError::Corrupt)
    }

    /// Seals any bytes with the current key, bound to `aad`: a value only
    /// opens with the same associated data, so each use names its purpose and
    /// owner in it (`otp-webhook-secret:<client>`, `otp-login-token-key:<kid>`)
    /// and a sealed value cannot be moved from one to another.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Result<String, OpenError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| OpenError::Seal)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(bytes)))
    }

    /// Opens what [`Self::seal_bytes`] sealed with `aad`, under the current
    /// or the previous key. Unlike [`Self::open`], a value without the prefix
    /// is refused: nothing but a webhook secret was ever stored in the clear.
    pub fn open_bytes(&self, aad: &[u8], stored: &str) -> Result<Vec<u8>, OpenError> {
        let rest = stored.strip_prefix(PREFIX).ok_or(OpenError::Corrupt)?;
        let (id, body) = rest.split_once(':').ok_or(OpenError::Corrupt)?;
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let bytes = STANDARD.decode(body).map_err(|_| OpenError::Corrupt)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Corrupt);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        key.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| OpenError::Corrupt)
    }

    /// Whether a stored value should be sealed again: plaintext, or sealed
    /// with a key other than the current one.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        !stored.starts_with(&format!("{PREFIX}{}:", self.current.id))
    }
}

/// What [`reseal_all`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Clients whose secrets are now sealed with the current key.
    pub resealed: u64,
    /// Clients left as they were: a value no key here opens, or plaintext
    /// while it is refused (logged by id).
    pub skipped: u64,
}

/// Seals every client secret not yet sealed with the current key: a
/// previous key's, and plaintext only while it is accepted (otherwise a
/// value planted in the database would be laundered into a sealed one at
/// the next start). Each row is replaced only
/// if it still holds what was read, so several processes doing this at once,
/// or a concurrent `otpctl client rotate-secret`, lose nothing.
pub async fn reseal_all(pool: &PgPool, keys: &WebhookSecretKeys) -> Result<Resealed, sqlx::Error> {
    let current = format!("{PREFIX}{}:%", keys.current_id());
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(UNSEALED).bind(&current).fetch_all(pool).await?;
    let mut done = Resealed::default();
    for (client, secret, previous) in rows {
        let reseal = |stored: &str| -> Result<String, OpenError> {
            if !keys.needs_reseal(stored) {
                return Ok(stored.to_owned());
            }
            let plain = keys.open(&client, stored)?;
            keys.seal(&client, plain.expose_secret())
        };
        let sealed = reseal(&secret).and_then(|s| Ok((s, previous.as_deref().map(&reseal).transpose()?)));
        let (new_secret, new_previous) = match sealed {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::warn!(client_id = %client, %error, "webhook secret left as it is");
                done.skipped += 1;
                continue;
            }
        };
        let updated = sqlx::query(RESEAL)
            .bind(&client)
            .bind(&new_secret)
            .bind(&new_previous)
            .bind(&secret)
            .bind(&previous)
            .execute(pool)
            .await?;
        done.resealed += updated.rows_affected();
    }
    Ok(done)
}

/// The sealing's statements, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        ("webhook_secrets.unsealed", UNSEALED),
        ("webhook_secrets.reseal", RESEAL),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = *b"0123456789abcdefghijklmnopqrstuv";
    const OLD: [u8; 32] = *b"vutsrqponmlkjihgfedcba9876543210";

    #[test]
    fn a_sealed_secret_opens_for_its_client_only() {
        let keys = WebhookSecretKeys::new(&KEY, None);
        let sealed = keys.seal("c1", "whsec_dGVzdA==").unwrap();
        assert!(
            sealed.starts_with(&format!("enc:v1:{}:", keys.current_id())),
            "{sealed}"
        );
        assert!(!sealed.contains("whsec_") && !sealed.contains("dGVzdA"));
        assert_ne!(
            sealed,
            keys.seal("c1", "whsec_dGVzdA==").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(keys.open("c1", &sealed).unwrap().expose_secret(), "whsec_dGVzdA==");
        assert!(matches!(keys.open("c2", &sealed), Err(OpenError::Corrupt)));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert!(keys.open("c1", &altered).is_err());
    }

    #[test]
    fn a_plaintext_value_opens_only_while_plaintext_is_accepted() {
        let keys = WebhookSecretKeys::new(&KEY, None);
        assert!(matches!(keys.open("c1", "whsec_planted"), Err(OpenError::Plaintext)));
        let upgrading = keys.accepting_plaintext(true);
        assert_eq!(upgrading.open("c1", "whsec_old").unwrap().expose_secret(), "whsec_old");
        assert!(upgrading.needs_reseal("whsec_old"));
    }

    #[test]
    fn the_previous_key_still_opens_during_a_rotation() {
        let old = WebhookSecretKeys::new(&OLD, None);
        let sealed = old.seal("c1", "whsec_x").unwrap();
        let rotated = WebhookSecretKeys::new(&KEY, Some(&OLD));
        assert_eq!(rotated.open("c1", &sealed).unwrap().expose_secret(), "whsec_x");
        assert!(rotated.needs_reseal(&sealed));
        assert!(!rotated.needs_reseal(&rotated.seal("c1", "whsec_x").unwrap()));
        let without = WebhookSecretKeys::new(&KEY, None);
        assert!(matches!(without.open("c1", &sealed), Err(OpenError::UnknownKey(_))));
    }

    #[test]
    fn sealed_bytes_open_with_their_associated_data_only() {
        let keys = WebhookSecretKeys::new(&KEY, None);
        let sealed = keys.seal_bytes(b"otp-login-token-key:k1", &[0, 1, 255]).unwrap();
        assert_eq!(
            keys.open_bytes(b"otp-login-token-key:k1", &sealed).unwrap(),
            [0, 1, 255]
        );
        assert!(matches!(
            keys.open_bytes(b"otp-login-token-key:k2", &sealed),
            Err(OpenError::Corrupt)
        ));
        // A webhook secret's associated data differs: not interchangeable.
        assert!(keys.open("otp-login-token-key:k1", &sealed).is_err());
        assert!(matches!(keys.open_bytes(b"x", "in the clear"), Err(OpenError::Corrupt)));
    }

    #[test]
    fn keys_are_32_bytes_of_base64_or_hex_and_no_placeholder() {
        let b64 = STANDARD.encode(KEY);
        assert_eq!(parse_key("WEBHOOK_SECRET_KEY", &b64).unwrap(), KEY);
        assert_eq!(parse_key("WEBHOOK_SECRET_KEY", &hex::encode(KEY)).unwrap(), KEY);
        assert!(parse_key("WEBHOOK_SECRET_KEY", &STANDARD.encode([7u8; 31])).is_err());
        assert!(parse_key("WEBHOOK_SECRET_KEY", &STANDARD.encode([0u8; 32])).is_err());
        assert!(parse_key("WEBHOOK_SECRET_KEY", "change-me").is_err());
        let encoded = STANDARD.encode("change-me-change-me-change-me-12");
        assert!(parse_key("WEBHOOK_SECRET_KEY", &encoded)
            .unwrap_err()
            .to_string()
            .contains("placeholder"));
        let error = parse_key("WEBHOOK_SECRET_KEY", "change-me-to-a-long-random-string-of-44-c")
            .unwrap_err()
            .to_string();
        assert!(error.contains("placeholder") && !error.contains("change-me"), "{error}");
    }
}
