//! How each provider signs its callbacks, checked in constant time:
//! Twilio's `X-Twilio-Signature` (HMAC-SHA1 over the URL and the sorted form
//! parameters, base64), Meta's `X-Hub-Signature-256` (HMAC-SHA256 over the
//! raw body, hex) and Vonage's signed callbacks (`sig` over the sorted
//! parameters, MD5 hash or HMAC-SHA256).

use crate::config::VonageSignature;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Whether `signature` is Twilio's for `url` and `params`.
pub fn twilio_valid(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    twilio_mac(auth_token, url, params).verify_slice(&expected).is_ok()
}

/// Twilio's MAC: the URL, then each parameter's name and value, sorted.
fn twilio_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Whether `header` (`sha256=<hex>`) is Meta's signature of `body`.
pub fn meta_valid(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(Ok(expected)) = header.trim().strip_prefix("sha256=").map(hex::decode) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Vonage's signed string: every parameter but `sig`, sorted by name, as
/// `&name=value` with `&` and `=` in values replaced by `_`.
fn vonage_signed(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(name, _)| name != "sig").collect();
    sorted.sort();
    sorted
        .into_iter()
        .map(|(name, value)| format!("&{name}={}", value.replace(['&', '='], "_")))
        .collect()
}

/// Whether the `sig` among `params` is Vonage's, by `method`.
pub fn vonage_valid(secret: &str, method: VonageSignature, params: &[(String, String)]) -> bool {
    let Some((_, sig)) = params.iter().find(|(name, _)| name == "sig") else {
        return false;
    };
    let signed = vonage_signed(params);
    let expected = match method {
        VonageSignature::Md5Hash => hex::encode(Md5::digest(format!("{signed}{secret}"))),
        VonageSignature::Sha256Hmac => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(signed.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
    };
    expected
        .as_bytes()
        .ct_eq(sig.trim().to_ascii_lowercase().as_bytes())
        .into()
}

/// For tests and tools: the signatures a provider would send.
pub mod sign {
    use super::*;

    pub fn twilio(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
        let mac = twilio_mac(auth_token, url, params);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    pub fn meta(app_secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    pub fn vonage_md5(secret: &str, params: &[(String, String)]) -> String {
        hex::encode(Md5::digest(format!("{}{secret}", vonage_signed(params))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn twilios_documented_vector_verifies() {
        // Twilio's "Secure webhooks" guide: auth token 12345, this URL and these parameters.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let form = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert!(twilio_valid("12345", url, &form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!twilio_valid("12346", url, &form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!twilio_valid(
            "12345",
            "https://mycompany.com/other.php",
            &form,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!twilio_valid("12345", url, &form, "not base64!"));
        assert_eq!(sign::twilio("12345", url, &form), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn meta_signs_the_raw_body() {
        let body = br#"{"entry":[]}"#;
        let header = sign::meta("app-secret", body);
        assert!(meta_valid("app-secret", body, &header));
        assert!(!meta_valid("app-secret", br#"{"entry":[1]}"#, &header));
        assert!(!meta_valid("other", body, &header));
        assert!(!meta_valid("app-secret", body, "md5=00"));
    }

    #[test]
    fn vonage_signs_the_sorted_parameters_without_sig() {
        let mut receipt = params(&[("messageId", "0A00"), ("status", "delivered"), ("to", "a&b=c")]);
        let sig = sign::vonage_md5("secret", &receipt);
        receipt.push(("sig".into(), sig.to_uppercase()));
        assert!(vonage_valid("secret", VonageSignature::Md5Hash, &receipt));
        assert!(!vonage_valid("wrong", VonageSignature::Md5Hash, &receipt));
        receipt[1].1 = "failed".into();
        assert!(!vonage_valid("secret", VonageSignature::Md5Hash, &receipt), "tampered");
    }
}
