//! The text the user receives, per language.

use shared::domain::Language;

/// `Your {title} verification code is 123456. It expires in 10 minutes.`
pub fn sms_text(language: Language, title: &str, code: &str, minutes: i64) -> String {
    let minutes = minutes.max(1);
    match language {
        Language::En => {
            let unit = if minutes == 1 { "minute" } else { "minutes" };
            format!("Your {title} verification code is {code}. It expires in {minutes} {unit}.")
        }
        Language::Es => {
            let unit = if minutes == 1 { "minuto" } else { "minutos" };
            format!("Tu código de verificación de {title} es {code}. Vence en {minutes} {unit}.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_the_contract() {
        assert_eq!(
            sms_text(Language::En, "Acme", "123456", 10),
            "Your Acme verification code is 123456. It expires in 10 minutes."
        );
        assert_eq!(
            sms_text(Language::Es, "Acme", "123456", 10),
            "Tu código de verificación de Acme es 123456. Vence en 10 minutos."
        );
        assert_eq!(
            sms_text(Language::En, "Acme", "1234", 0),
            "Your Acme verification code is 1234. It expires in 1 minute."
        );
    }
}
