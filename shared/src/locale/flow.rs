//! What a flow says about its texts: its own templates per channel and
//! locale (the `templates` phone setting) and the autofill lines of an SMS
//! (`webOtpDomain` for WebOTP, `androidAppHash` for Android's SMS
//! Retriever). Checked when the flow is saved; rendered by the dispatcher
//! and the preview.

use super::render::{sms_text, twiml, voice_text, Args};
use super::segments::segments;
use super::template::{Channel, Template, TemplateError};
use super::Locale;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The `templates` setting: channel → locale → text with `{code}`, `{app}`
/// and `{minutes}`. Keys are BCP 47 tags of built-in locales, stored in
/// their canonical spelling (`es-CO` is kept as `es`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowTemplates {
    /// Locale → SMS text; at most 2 segments once rendered with a 10-digit
    /// code, the project's name, 1440 minutes and the autofill lines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub sms: BTreeMap<Locale, String>,
    /// Locale → the sentence a call says (twice), at most 500 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub voice: BTreeMap<Locale, String>,
}

/// The autofill lines a flow adds at the end of every SMS.
#[derive(Clone, Copy, Debug, Default)]
pub struct Autofill<'a> {
    /// WebOTP: the last line becomes `@{domain} #{code}`.
    pub web_otp_domain: Option<&'a str>,
    /// Android SMS Retriever: the app's 11-character hash on its own line.
    pub android_app_hash: Option<&'a str>,
}

impl FlowTemplates {
    pub fn is_empty(&self) -> bool {
        self.sms.is_empty() && self.voice.is_empty()
    }

    /// Refuses what the contract refuses (`400:invalid_templates`): a text
    /// without `{code}`, an unknown placeholder, an SMS over 2 segments
    /// once rendered with the longest code, `app` and `autofill`.
    pub fn check(&self, app: &str, autofill: Autofill<'_>) -> Result<(), TemplateError> {
        for text in self.sms.values() {
            let template = Template::parse(Channel::Sms, text, app)?;
            let mut longest = template.render(&Args {
                code: Template::LONGEST_CODE,
                app,
                minutes: Template::LONGEST_MINUTES,
            });
            append_autofill(&mut longest, autofill, Template::LONGEST_CODE);
            let count = segments(&longest).count;
            if count > Template::MAX_SMS_SEGMENTS {
                return Err(TemplateError::TooManySegments(count));
            }
        }
        for text in self.voice.values() {
            Template::parse(Channel::Voice, text, app)?;
        }
        Ok(())
    }

    /// The flow's text for `channel` in `locale`, else in its base language.
    fn pick(&self, channel: Channel, locale: Locale) -> Option<Template> {
        let texts = match channel {
            Channel::Sms => &self.sms,
            Channel::Voice => &self.voice,
        };
        if texts.is_empty() {
            return None;
        }
        let text = texts
            .get(&locale)
            .or_else(|| locale.base().and_then(|base| texts.get(&base)))?;
        // Checked when saved; a text that no longer parses falls back to
        // the built-in one rather than sending something broken.
        Template::stored(channel, text)
    }

    /// The SMS of a flow: its template (locale, then base language) or the
    /// built-in text, then the autofill lines.
    pub fn sms(&self, locale: Locale, args: &Args, autofill: Autofill<'_>) -> String {
        let mut text = match self.pick(Channel::Sms, locale) {
            Some(template) => template.render(args),
            None => sms_text(locale, args),
        };
        append_autofill(&mut text, autofill, args.code);
        text
    }

    /// The sentence a call says, with the same fallback as [`Self::sms`].
    pub fn voice_text(&self, locale: Locale, args: &Args) -> String {
        match self.pick(Channel::Voice, locale) {
            Some(template) => template.render(args),
            None => voice_text(locale, args),
        }
    }

    /// The TwiML of a call: [`Self::voice_text`] said twice.
    pub fn voice_twiml(&self, locale: Locale, args: &Args) -> String {
        twiml(locale, &self.voice_text(locale, args))
    }
}

/// Adds the autofill lines after a blank line: the SMS Retriever hash, then
/// WebOTP's `@domain #code`, which must be the last line.
pub fn append_autofill(text: &mut String, autofill: Autofill<'_>, code: &str) {
    if autofill.web_otp_domain.is_none() && autofill.android_app_hash.is_none() {
        return;
    }
    text.push('\n');
    if let Some(hash) = autofill.android_app_hash {
        text.push('\n');
        text.push_str(hash);
    }
    if let Some(domain) = autofill.web_otp_domain {
        text.push_str("\n@");
        text.push_str(domain);
        text.push_str(" #");
        text.push_str(code);
    }
}

/// A host name for WebOTP's `@domain` line: dot-separated labels of ASCII
/// letters, digits and hyphens (IDNs in their `xn--` form), no scheme,
/// port or path; at most 253 characters.
pub fn is_host_name(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An app's SMS Retriever hash: 11 characters of base64 (what
/// `AppSignatureHelper` prints).
pub fn is_app_hash(hash: &str) -> bool {
    hash.len() == 11
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::locale::tests::ACME as ARGS;

    fn templates(json: serde_json::Value) -> FlowTemplates {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_flows_template_wins_then_its_base_language_then_the_built_in_text() {
        let own = templates(serde_json::json!({"sms": {"pt": "PT {code}", "es-CO": "{app}: {code}"}}));
        let none = Autofill::default();
        assert_eq!(own.sms(Locale::PtBr, &ARGS, none), "PT 123456");
        assert_eq!(own.sms(Locale::Es, &ARGS, none), "Acme: 123456");
        assert_eq!(
            own.sms(Locale::En, &ARGS, none),
            "Your Acme verification code is 123456. It expires in 10 minutes."
        );
        assert_eq!(
            serde_json::to_value(&own).unwrap(),
            serde_json::json!({"sms": {"es": "{app}: {code}", "pt": "PT {code}"}})
        );
        let voice = templates(serde_json::json!({"voice": {"fr": "Code {app} : {code}"}}));
        assert_eq!(voice.voice_text(Locale::Fr, &ARGS), "Code Acme : 1, 2, 3, 4, 5, 6");
        assert!(voice.voice_twiml(Locale::Fr, &ARGS).contains("language=\"fr-FR\""));
        assert!(voice.voice_text(Locale::De, &ARGS).contains("1, 2, 3, 4, 5, 6"));
    }

    #[test]
    fn unknown_channels_and_locales_are_refused_when_read() {
        let parse = |json| serde_json::from_value::<FlowTemplates>(json);
        assert!(parse(serde_json::json!({"whatsapp": {"en": "{code}"}})).is_err());
        assert!(parse(serde_json::json!({"sms": {"tlh": "{code}"}})).is_err());
        assert!(parse(serde_json::json!({"sms": {"en": 5}})).is_err());
    }

    #[test]
    fn autofill_lines_end_the_sms_and_count_towards_its_segments() {
        let autofill = Autofill {
            web_otp_domain: Some("login.example.com"),
            android_app_hash: Some("FA+9qCX9VSu"),
        };
        let text = FlowTemplates::default().sms(Locale::En, &ARGS, autofill);
        assert_eq!(
            text,
            "Your Acme verification code is 123456. It expires in 10 minutes.\n\nFA+9qCX9VSu\n@login.example.com #123456"
        );
        let web_only = Autofill {
            web_otp_domain: Some("example.com"),
            ..Autofill::default()
        };
        assert!(FlowTemplates::default()
            .sms(Locale::Es, &ARGS, web_only)
            .ends_with(".\n\n@example.com #123456"));

        // 280 GSM characters and the code fit two segments alone, not with the lines.
        let own = templates(serde_json::json!({"sms": {"en": format!("{}{{code}}", "a".repeat(280))}}));
        assert_eq!(own.check("Acme", Autofill::default()), Ok(()));
        assert_eq!(own.check("Acme", autofill), Err(TemplateError::TooManySegments(3)));
    }

    #[test]
    fn check_refuses_what_the_contract_refuses() {
        let check = |json| templates(json).check("Acme", Autofill::default());
        assert_eq!(
            check(serde_json::json!({"sms": {"en": "no code"}})),
            Err(TemplateError::NoCode)
        );
        assert_eq!(
            check(serde_json::json!({"voice": {"en": "{code} {user}"}})),
            Err(TemplateError::UnknownPlaceholder("user".into()))
        );
        assert!(check(serde_json::json!({"sms": {"en": "{code}"}, "voice": {"ja": "{code}"}})).is_ok());
    }

    #[test]
    fn host_names_and_app_hashes_are_checked() {
        for ok in [
            "example.com",
            "login.example.co.uk",
            "xn--bcher-kva.example",
            "localhost",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "https://example.com",
            "example.com:443",
            "-a.com",
            "a..com",
            "exa mple.com",
            "例え.jp",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
        assert!(is_app_hash("FA+9qCX9VSu"));
        assert!(!is_app_hash("FA+9qCX9VS"));
        assert!(!is_app_hash("FA+9qCX9VS!"));
    }
}
