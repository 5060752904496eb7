//! One-time codes: generated uniformly from the OS CSPRNG, stored only as
//! `bcrypt(HMAC-SHA256(pepper, "<validationId>:<code>"))`. The pepper lives in
//! the environment, never in the database, so a dump alone cannot be brute-forced
//! even though a 6-digit code has only a million values.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::fmt;

/// A code as the user types it: 4 to 10 ASCII digits, leading zeros kept.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

/// Not 4 to 10 digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a code is 4 to 10 digits")]
pub struct InvalidOtp;

impl OtpCode {
    pub fn parse(value: &str) -> Result<Self, InvalidOtp> {
        if (4..=10).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidOtp)
        }
    }

    /// `length` uniform digits from the OS CSPRNG (`gen_range` rejects rather
    /// than reducing modulo, so there is no bias).
    pub fn generate(length: u8) -> Self {
        let mut rng = rand::rngs::OsRng;
        Self((0..length).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect())
    }

    /// The plain code, for the message to the user and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Never prints the code.
impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(***)")
    }
}

/// Hashes and checks codes with the server-side pepper.
#[derive(Clone)]
pub struct OtpHasher {
    pepper: SecretString,
    cost: u32,
}

impl OtpHasher {
    pub fn new(pepper: SecretString, cost: u32) -> Self {
        Self { pepper, cost }
    }

    fn keyed(&self, validation_id: &str, code: &OtpCode) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.pepper.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(validation_id.as_bytes());
        mac.update(b":");
        mac.update(code.0.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// The `$2b$` string to store. CPU-bound: call it on a blocking thread.
    pub fn hash(&self, validation_id: &str, code: &OtpCode) -> Result<String, bcrypt::BcryptError> {
        bcrypt::hash(self.keyed(validation_id, code), self.cost)
    }

    /// Whether `code` is the one behind `stored`. CPU-bound like `hash`.
    pub fn verify(&self, validation_id: &str, code: &OtpCode, stored: &str) -> bool {
        bcrypt::verify(self.keyed(validation_id, code), stored).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hasher() -> OtpHasher {
        OtpHasher::new(SecretString::from("pepper"), 4)
    }

    #[test]
    fn a_hash_verifies_only_its_own_code_and_validation() {
        let code = OtpCode::parse("012345").unwrap();
        let stored = hasher().hash("674de8df21c72be3cc42b8a7", &code).unwrap();
        assert!(stored.starts_with("$2b$04$"));
        assert!(hasher().verify("674de8df21c72be3cc42b8a7", &code, &stored));
        assert!(!hasher().verify("674de8df21c72be3cc42b8a8", &code, &stored));
        assert!(!hasher().verify("674de8df21c72be3cc42b8a7", &OtpCode::parse("12345").unwrap(), &stored));
        let other_pepper = OtpHasher::new(SecretString::from("other"), 4);
        assert!(!other_pepper.verify("674de8df21c72be3cc42b8a7", &code, &stored));
    }

    #[test]
    fn generated_codes_have_the_length_and_every_digit_appears() {
        let mut seen = [false; 10];
        for _ in 0..200 {
            let code = OtpCode::generate(6);
            assert_eq!(code.expose().len(), 6);
            for b in code.expose().bytes() {
                seen[usize::from(b - b'0')] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(format!("{:?}", OtpCode::generate(6)), "OtpCode(***)");
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_4_to_10_digits(s in "\\PC{0,12}") {
            let ok = (4..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(OtpCode::parse(&s).is_ok(), ok);
        }
    }
}
