//! The text the user receives: the flow's template for the validation's
//! locale, else the built-in text (`shared::locale`, Fluent bundles parsed
//! once per process), then the flow's autofill lines.

use shared::domain::{Language, PhoneSettings};
use shared::locale::{self, Args};

/// The SMS of a code that lives `minutes` more (0 or less is said as 1).
/// `settings`: the flow's, when it still exists.
pub fn sms_text(language: Language, app: &str, code: &str, minutes: i64, settings: Option<&PhoneSettings>) -> String {
    let args = Args {
        code,
        app,
        minutes: u32::try_from(minutes.max(1)).unwrap_or(u32::MAX),
    };
    match settings {
        Some(settings) => settings.templates.sms(language, &args, settings.autofill()),
        None => locale::sms_text(language, &args),
    }
}

/// The TwiML of a call that reads a code living `minutes` more: the flow's
/// voice template for the locale, else the built-in sentence, said digit by
/// digit, twice.
pub fn voice_twiml(
    language: Language,
    app: &str,
    code: &str,
    minutes: i64,
    settings: Option<&PhoneSettings>,
) -> String {
    let args = Args {
        code,
        app,
        minutes: u32::try_from(minutes.max(1)).unwrap_or(u32::MAX),
    };
    match settings {
        Some(settings) => settings.templates.voice_twiml(language, &args),
        None => locale::voice_twiml(language, &args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_the_contract() {
        let defaults = PhoneSettings::default();
        assert_eq!(
            sms_text(Language::En, "Acme", "123456", 10, Some(&defaults)),
            "Your Acme verification code is 123456. It expires in 10 minutes."
        );
        assert_eq!(
            sms_text(Language::Es, "Acme", "123456", 10, None),
            "Tu código de verificación de Acme es 123456. Vence en 10 minutos."
        );
        assert_eq!(
            sms_text(Language::En, "Acme", "1234", 0, None),
            "Your Acme verification code is 1234. It expires in 1 minute."
        );
    }

    #[test]
    fn the_flows_template_and_autofill_lines_are_used() {
        let settings: PhoneSettings = serde_json::from_value(serde_json::json!({
            "phoneGateway": "sms", "otpLength": 6, "otpExpiresInSeconds": 600, "maxAttempts": 3,
            "resendCooldownSeconds": 60, "maxSendsPerHour": 10,
            "templates": {"sms": {"pt": "{app}: {code} ({minutes} min)"}},
            "webOtpDomain": "example.com"
        }))
        .unwrap();
        assert_eq!(
            sms_text(Language::PtBr, "Acme", "123456", 10, Some(&settings)),
            "Acme: 123456 (10 min)\n\n@example.com #123456"
        );
        assert!(sms_text(Language::Fr, "Acme", "123456", 10, Some(&settings)).starts_with("123456 est votre code Acme"));
    }
}
