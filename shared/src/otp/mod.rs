//! One-time codes. A validation's code is derived from its id with a key of
//! the dispatcher's (`CodeDeriver`), so every send of one validation carries
//! the same code however many times it is repeated or taken over, and nothing
//! but the hash is stored: `bcrypt(HMAC-SHA256(pepper, "<validationId>:<code>"))`.
//! The pepper lives in the environment, never in the database, so a dump alone
//! cannot be brute-forced even though a 6-digit code has only a million values.

mod bcrypt_many;
mod blowfish_init;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
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

/// Derives each validation's code: `length` digits from the HMAC-SHA256
/// stream of (key, validation id), uniform by rejection sampling (a byte of
/// 250 or more is skipped, so each digit is `byte % 10` of a byte uniform on
/// 0..250). Without the key the codes are as unpredictable as random ones;
/// with it, the dispatcher can repeat a send's code without storing it.
#[derive(Clone)]
pub struct CodeDeriver {
    key: SecretString,
}

impl CodeDeriver {
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// The code of validation `id`, `length` digits (4..=10).
    pub fn code(&self, id: &str, length: u8) -> OtpCode {
        let length = usize::from(length.clamp(4, 10));
        let mut digits = String::with_capacity(length);
        for block in 0u32.. {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(b"otp-code:v1:");
            mac.update(id.as_bytes());
            mac.update(&block.to_be_bytes());
            for byte in mac.finalize().into_bytes() {
                if byte < 250 {
                    digits.push(char::from(b'0' + byte % 10));
                    if digits.len() == length {
                        return OtpCode(digits);
                    }
                }
            }
        }
        unreachable!("a 32-byte block yields digits with overwhelming probability")
    }
}

/// Hashes and checks codes with the server-side pepper.
#[derive(Clone)]
pub struct OtpHasher {
    pepper: SecretString,
    cost: u32,
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    salt
}

/// bcrypt's own base64 alphabet, unpadded.
const BCRYPT_BASE64: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::BCRYPT, base64::engine::general_purpose::NO_PAD);

impl OtpHasher {
    /// How many codes `hash_many` computes interleaved: a batch this size
    /// costs little more than one code.
    pub const LANES: usize = bcrypt_many::LANES;

    /// `cost` is bcrypt's, 4..=31 (the configuration refuses anything else;
    /// it is clamped here so no value can make hashing panic).
    pub fn new(pepper: SecretString, cost: u32) -> Self {
        Self {
            pepper,
            cost: cost.clamp(4, 31),
        }
    }

    /// The keyed code: base64 of HMAC-SHA256(pepper, "<id>:<code>"), 44 bytes.
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
    pub fn hash(&self, validation_id: &str, code: &OtpCode) -> String {
        let key = self.bcrypt_key(validation_id, code);
        let salt = random_salt();
        let [raw] = bcrypt_many::bcrypt(self.cost, [&key], [&salt]);
        self.format(&salt, &raw)
    }

    /// The `$2b$` strings for several codes, in order, each with its own
    /// random salt. Up to `LANES` are computed interleaved (see `bcrypt_many`),
    /// so a batch costs about a third of hashing them one by one.
    pub fn hash_many(&self, codes: &[(&str, &OtpCode)]) -> Vec<String> {
        let mut hashes = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(Self::LANES) {
            let keys: Vec<Vec<u8>> = chunk.iter().map(|(id, code)| self.bcrypt_key(id, code)).collect();
            let salts: Vec<[u8; 16]> = chunk.iter().map(|_| random_salt()).collect();
            let raw: Vec<[u8; 24]> = match (keys.as_slice(), salts.as_slice()) {
                ([a], [sa]) => bcrypt_many::bcrypt(self.cost, [a], [sa]).to_vec(),
                ([a, b], [sa, sb]) => bcrypt_many::bcrypt(self.cost, [a, b], [sa, sb]).to_vec(),
                ([a, b, c], [sa, sb, sc]) => bcrypt_many::bcrypt(self.cost, [a, b, c], [sa, sb, sc]).to_vec(),
                ([a, b, c, d], [sa, sb, sc, sd]) => {
                    bcrypt_many::bcrypt(self.cost, [a, b, c, d], [sa, sb, sc, sd]).to_vec()
                }
                _ => unreachable!("chunks hold 1 to {} codes", Self::LANES),
            };
            hashes.extend(salts.iter().zip(&raw).map(|(salt, raw)| self.format(salt, raw)));
        }
        hashes
    }

    /// bcrypt's password for a code: the keyed code NUL-terminated, as the
    /// `bcrypt` crate does (45 bytes, under bcrypt's 72-byte limit).
    fn bcrypt_key(&self, validation_id: &str, code: &OtpCode) -> Vec<u8> {
        let mut key = self.keyed(validation_id, code).into_bytes();
        key.push(0);
        key
    }

    /// `$2b$<cost>$<salt><hash>`; bcrypt keeps 23 of the 24 output bytes.
    fn format(&self, salt: &[u8; 16], raw: &[u8; 24]) -> String {
        format!(
            "$2b${:02}${}{}",
            self.cost,
            BCRYPT_BASE64.encode(salt),
            BCRYPT_BASE64.encode(&raw[..23])
        )
    }

    /// Whether `code` is the one behind `stored` (checked by the `bcrypt`
    /// crate). CPU-bound like `hash`.
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
        let stored = hasher().hash("674de8df21c72be3cc42b8a7", &code);
        assert!(stored.starts_with("$2b$04$"));
        assert!(hasher().verify("674de8df21c72be3cc42b8a7", &code, &stored));
        assert!(!hasher().verify("674de8df21c72be3cc42b8a8", &code, &stored));
        assert!(!hasher().verify("674de8df21c72be3cc42b8a7", &OtpCode::parse("12345").unwrap(), &stored));
        let other_pepper = OtpHasher::new(SecretString::from("other"), 4);
        assert!(!other_pepper.verify("674de8df21c72be3cc42b8a7", &code, &stored));
    }

    fn deriver(key: &str) -> CodeDeriver {
        CodeDeriver::new(SecretString::from(key))
    }

    #[test]
    fn a_validation_always_gets_the_same_code_and_another_key_another() {
        let id = "674de8df21c72be3cc42b8a7";
        let code = deriver("k1").code(id, 6);
        assert_eq!(code.expose().len(), 6);
        assert_eq!(deriver("k1").code(id, 6), code, "one validation, one code");
        assert_ne!(deriver("k2").code(id, 6), code);
        assert_ne!(deriver("k1").code("674de8df21c72be3cc42b8a8", 6), code);
        assert_eq!(deriver("k1").code(id, 10).expose().len(), 10);
        assert_eq!(format!("{code:?}"), "OtpCode(***)");
    }

    #[test]
    fn derived_digits_are_uniform() {
        // 20,000 six-digit codes: 120,000 digits, 12,000 expected per digit.
        // Chi-square with 9 degrees of freedom; 27.9 is the 0.1 % critical value.
        let deriver = deriver("uniformity");
        let mut counts = [0u32; 10];
        for n in 0..20_000u32 {
            for b in deriver.code(&format!("{n:024}"), 6).expose().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        let expected = 12_000.0;
        let chi2: f64 = counts
            .iter()
            .map(|c| (f64::from(*c) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 27.9, "digit counts {counts:?} (chi2 {chi2:.1})");
    }

    /// The interleaved hashes are bcrypt's, bit for bit: with the salt each
    /// one drew, the `bcrypt` crate computes the same string.
    fn assert_same_as_bcrypt_crate(hasher: &OtpHasher, codes: &[(&str, &OtpCode)]) {
        let hashes = hasher.hash_many(codes);
        assert_eq!(hashes.len(), codes.len());
        for ((id, code), stored) in codes.iter().zip(&hashes) {
            let parts: bcrypt::HashParts = stored.parse().unwrap();
            let salt: [u8; 16] = BCRYPT_BASE64.decode(parts.get_salt()).unwrap().try_into().unwrap();
            let expected = bcrypt::hash_with_salt(hasher.keyed(id, code), parts.get_cost(), salt)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoB);
            assert_eq!(stored, &expected);
            assert!(hasher.verify(id, code, stored));
        }
    }

    #[test]
    fn batches_of_every_size_match_the_bcrypt_crate() {
        let ids: Vec<String> = (0..9).map(|n| format!("674de8df21c72be3cc42b8a{n}")).collect();
        let codes: Vec<OtpCode> = (0..9).map(|n| OtpCode::parse(&format!("{n:06}")).unwrap()).collect();
        for size in 1..=9 {
            let batch: Vec<(&str, &OtpCode)> = ids.iter().map(String::as_str).zip(&codes).take(size).collect();
            assert_same_as_bcrypt_crate(&hasher(), &batch);
        }
        let costly = OtpHasher::new(SecretString::from("pepper"), 6);
        assert_same_as_bcrypt_crate(&costly, &[(&ids[0], &codes[0]), (&ids[1], &codes[1])]);
        assert!(costly.hash(&ids[0], &codes[0]).starts_with("$2b$06$"));
    }

    /// A constant or reused salt would still match the bcrypt crate (which
    /// reads the salt from the hash); every hash must have its own.
    #[test]
    fn every_hash_of_a_batch_has_its_own_salt() {
        let id = "674de8df21c72be3cc42b8a0";
        let code = OtpCode::parse("123456").unwrap();
        let batch: Vec<(&str, &OtpCode)> = (0..9).map(|_| (id, &code)).collect();
        let mut hashes = hasher().hash_many(&batch);
        hashes.extend(hasher().hash_many(&batch[..3]));
        hashes.push(hasher().hash(id, &code));
        // `$2b$04$` + 22 characters of salt + 31 of hash.
        let salts: std::collections::HashSet<&str> = hashes.iter().map(|h| &h[7..29]).collect();
        assert_eq!(salts.len(), hashes.len(), "{hashes:#?}");
        let distinct: std::collections::HashSet<&String> = hashes.iter().collect();
        assert_eq!(distinct.len(), hashes.len());
    }

    #[test]
    fn the_core_reproduces_the_published_bcrypt_vectors() {
        // From jBCrypt's TestBCrypt (the `bcrypt` crate's own raw vectors):
        // $2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s. for "".
        let salt: [u8; 16] = BCRYPT_BASE64
            .decode("DCq7YPn5Rq63x1Lad4cll.")
            .unwrap()
            .try_into()
            .unwrap();
        let [raw] = bcrypt_many::bcrypt(6, [b"\0".as_slice()], [&salt]);
        assert_eq!(BCRYPT_BASE64.encode(&raw[..23]), "TV4S6ytwfsfvkgY8jIucDrjc8deX1s.");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_codes_and_peppers_hash_as_the_bcrypt_crate_does(
            pepper in "\\PC{1,40}",
            codes in proptest::collection::vec(("[0-9a-f]{24}", "[0-9]{4,10}"), 1..7),
        ) {
            let hasher = OtpHasher::new(SecretString::from(pepper), 4);
            let codes: Vec<(String, OtpCode)> =
                codes.into_iter().map(|(id, code)| (id, OtpCode::parse(&code).unwrap())).collect();
            let batch: Vec<(&str, &OtpCode)> = codes.iter().map(|(id, code)| (id.as_str(), code)).collect();
            assert_same_as_bcrypt_crate(&hasher, &batch);
        }
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_4_to_10_digits(s in "\\PC{0,12}") {
            let ok = (4..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(OtpCode::parse(&s).is_ok(), ok);
        }
    }
}
