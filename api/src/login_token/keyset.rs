//! Which key signs and which keys are published, at a given time: a pure
//! function of the stored keys (and `LOGIN_TOKEN_KEY`), so every instance
//! that has read the same rows answers the same.

use super::store::StoredKey;
use super::{KeyError, LoginKey, LOGIN_TOKEN_SECONDS};
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use shared::webhook_secrets::WebhookSecretKeys;
use std::sync::Arc;

/// How long a key stays in the JWKS once its successor signs: a token's
/// lifetime, plus a minute for clocks that differ between instances and an
/// instance that read the rotation a refresh late.
pub const PUBLISHED_AFTER_SUCCESSOR: Duration = Duration::seconds(LOGIN_TOKEN_SECONDS + 60);

/// A private key ready to sign.
#[derive(Clone)]
pub(super) struct Signer {
    pub kid: String,
    pub encoding: Arc<EncodingKey>,
}

impl Signer {
    pub fn new(key: &LoginKey) -> Result<Self, KeyError> {
        Ok(Self {
            kid: key.kid(),
            encoding: Arc::new(key.encoding_key()?),
        })
    }
}

/// A stored key as the JWKS needs it.
struct Published {
    kid: String,
    jwk: Value,
    /// When the next generation starts signing: from then on no token is
    /// signed with this key, and it is published for
    /// [`PUBLISHED_AFTER_SUCCESSOR`] more.
    superseded_at: Option<DateTime<Utc>>,
}

/// One read of the keys.
pub(super) struct KeySet {
    /// `LOGIN_TOKEN_KEY`: when set, it signs every token.
    configured: Option<Signer>,
    configured_jwk: Option<Value>,
    /// Every stored key, oldest generation first.
    stored: Vec<Published>,
    /// The stored keys that sign now or will (opened), by `signs_from`.
    signers: Vec<(DateTime<Utc>, Signer)>,
}

impl KeySet {
    /// `rows` ordered by generation. Without a configured key, the key that
    /// signs at `now` and every later one are opened with `sealing`
    /// (reusing those `reuse` already opened); older keys are only published.
    pub fn build(
        configured: Option<&LoginKey>,
        rows: Vec<StoredKey>,
        sealing: Option<&WebhookSecretKeys>,
        reuse: Option<&KeySet>,
        now: DateTime<Utc>,
    ) -> Result<Self, KeyError> {
        let active = rows.iter().rposition(|row| row.signs_from <= now).unwrap_or(0);
        let mut stored = Vec::with_capacity(rows.len());
        let mut signers = Vec::new();
        let successors: Vec<Option<DateTime<Utc>>> = rows
            .iter()
            .skip(1)
            .map(|next| Some(next.signs_from))
            .chain([None])
            .collect();
        for (index, (row, superseded_at)) in rows.into_iter().zip(successors).enumerate() {
            let public = LoginKey::public_from_bytes(&row.kid, &row.public_key)?;
            if configured.is_none() && index >= active {
                let already = reuse
                    .and_then(|set| set.signers.iter().find(|(_, signer)| signer.kid == row.kid))
                    .map(|(_, signer)| signer.clone());
                let signer = match already {
                    Some(signer) => signer,
                    None => Signer::new(&row.open(sealing.ok_or(KeyError::NoSealingKey)?)?)?,
                };
                signers.push((row.signs_from, signer));
            }
            stored.push(Published {
                kid: row.kid,
                jwk: public,
                superseded_at,
            });
        }
        Ok(Self {
            configured: configured.map(Signer::new).transpose()?,
            configured_jwk: configured.map(LoginKey::public_jwk),
            stored,
            signers,
        })
    }

    /// The key that signs at `now`: `LOGIN_TOKEN_KEY` when set, else the
    /// newest stored key whose time has come (or, if a clock runs behind the
    /// database's, the first one).
    pub fn signer(&self, now: DateTime<Utc>) -> Option<&Signer> {
        if let Some(configured) = &self.configured {
            return Some(configured);
        }
        self.signers
            .iter()
            .rev()
            .find(|(from, _)| *from <= now)
            .or_else(|| self.signers.first())
            .map(|(_, signer)| signer)
    }

    /// `{"keys": [...]}`: `LOGIN_TOKEN_KEY` and every stored key that is
    /// current, still to come, or superseded less than
    /// [`PUBLISHED_AFTER_SUCCESSOR`] ago.
    pub fn jwks(&self, now: DateTime<Utc>) -> Value {
        let mut keys: Vec<Value> = self.configured_jwk.iter().cloned().collect();
        let configured_kid = self.configured.as_ref().map(|signer| signer.kid.as_str());
        keys.extend(
            self.stored
                .iter()
                .filter(|key| key.superseded_at.is_none_or(|at| at + PUBLISHED_AFTER_SUCCESSOR > now))
                .filter(|key| Some(key.kid.as_str()) != configured_kid)
                .map(|key| key.jwk.clone()),
        );
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEAL: [u8; 32] = *b"0123456789abcdefghijklmnopqrstuv";

    fn row(generation: i32, key: &LoginKey, sealing: &WebhookSecretKeys, signs_from: DateTime<Utc>) -> StoredKey {
        StoredKey::seal(generation, key, sealing, signs_from).unwrap()
    }

    fn kids(jwks: &Value) -> Vec<String> {
        let keys = jwks["keys"].as_array().unwrap();
        keys.iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn the_newest_key_whose_time_has_come_signs_and_its_predecessor_is_published_for_a_token_lifetime() {
        let sealing = WebhookSecretKeys::new(&SEAL, None);
        let t0 = Utc::now();
        let (old, new) = (LoginKey::generate(), LoginKey::generate());
        let switch = t0 + Duration::seconds(10);
        let rows = || vec![row(1, &old, &sealing, t0), row(2, &new, &sealing, switch)];
        let set = KeySet::build(None, rows(), Some(&sealing), None, t0).unwrap();
        assert_eq!(set.signer(t0).unwrap().kid, old.kid());
        assert_eq!(set.signer(switch).unwrap().kid, new.kid());
        // Published before it signs, so every instance's JWKS has it first.
        assert_eq!(kids(&set.jwks(t0)), [old.kid(), new.kid()]);
        let last_old_token_expires = switch + Duration::seconds(LOGIN_TOKEN_SECONDS);
        assert_eq!(kids(&set.jwks(last_old_token_expires)), [old.kid(), new.kid()]);
        assert_eq!(kids(&set.jwks(switch + PUBLISHED_AFTER_SUCCESSOR)), [new.kid()]);
        // Read after the switch: the old key is no longer opened.
        let later = KeySet::build(None, rows(), Some(&sealing), Some(&set), switch).unwrap();
        assert_eq!(later.signers.len(), 1);
        assert_eq!(later.signer(t0).unwrap().kid, new.kid());
    }

    #[test]
    fn a_configured_key_signs_and_stored_keys_are_still_published() {
        let sealing = WebhookSecretKeys::new(&SEAL, None);
        let (configured, stored) = (LoginKey::generate(), LoginKey::generate());
        let now = Utc::now();
        let rows = vec![row(1, &stored, &sealing, now)];
        // No sealing key needed: a configured key's API opens nothing.
        let set = KeySet::build(Some(&configured), rows, None, None, now).unwrap();
        assert_eq!(set.signer(now).unwrap().kid, configured.kid());
        assert_eq!(kids(&set.jwks(now)), [configured.kid(), stored.kid()]);
        let alone = KeySet::build(Some(&configured), Vec::new(), None, None, now).unwrap();
        assert_eq!(kids(&alone.jwks(now)), [configured.kid()]);
    }

    #[test]
    fn a_row_that_does_not_match_its_kid_or_sealing_key_is_refused() {
        let sealing = WebhookSecretKeys::new(&SEAL, None);
        let (key, other) = (LoginKey::generate(), LoginKey::generate());
        let now = Utc::now();
        let mut moved = row(1, &key, &sealing, now);
        moved.private_key = row(1, &other, &sealing, now).private_key;
        assert!(KeySet::build(None, vec![moved], Some(&sealing), None, now).is_err());
        let mut renamed = row(1, &key, &sealing, now);
        renamed.kid = other.kid();
        assert!(KeySet::build(None, vec![renamed], Some(&sealing), None, now).is_err());
        let wrong_seal = WebhookSecretKeys::new(&[7; 32], None);
        assert!(KeySet::build(None, vec![row(1, &key, &sealing, now)], Some(&wrong_seal), None, now).is_err());
        assert!(KeySet::build(None, vec![row(1, &key, &sealing, now)], None, None, now).is_err());
    }
}
