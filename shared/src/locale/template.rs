//! A flow's own text for a channel and locale, with the placeholders
//! `{code}`, `{app}` and `{minutes}`. Parsing is the validation: a
//! `Template` has a `{code}`, no unknown placeholder and, for SMS, fits two
//! segments with the longest code.

use super::render::Args;
use super::segments::segments;
use super::Locale;
use std::collections::BTreeMap;

/// A channel whose text a flow may give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Voice,
}

/// A flow's templates for one channel, by locale.
pub type Templates = BTreeMap<Locale, Template>;

/// Why a template is refused (the API answers `400:invalid_templates`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template must contain {{code}}")]
    NoCode,
    #[error("unknown placeholder {{{0}}}: use {{code}}, {{app}} or {{minutes}}")]
    UnknownPlaceholder(String),
    #[error("a '{{' or '}}' that does not belong to a placeholder")]
    StrayBrace,
    #[error("SMS template takes {0} segments with a 10-digit code; at most 2")]
    TooManySegments(usize),
    #[error("voice template is over {} characters", Template::MAX_VOICE_CHARS)]
    TooLong,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Code,
    App,
    Minutes,
}

/// A parsed template; see the module's documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    channel: Channel,
    parts: Vec<Part>,
}

impl Template {
    /// The longest code a flow can have (`otpLength` is at most 10).
    pub const LONGEST_CODE: &'static str = "0000000000";
    /// The longest lifetime, in minutes (`otpExpiresInSeconds` ≤ 86 400).
    pub const LONGEST_MINUTES: u32 = 1440;
    /// An SMS template may take this many segments once rendered.
    pub const MAX_SMS_SEGMENTS: usize = 2;
    /// A call reads the sentence twice; past this it is a speech.
    pub const MAX_VOICE_CHARS: usize = 500;

    /// Parses `text` for `channel`. `app` is the project's name, as the
    /// text will carry it: an SMS is measured with it, the longest code and
    /// the longest lifetime.
    pub fn parse(channel: Channel, text: &str, app: &str) -> Result<Template, TemplateError> {
        let parts = parts(text)?;
        if !parts.contains(&Part::Code) {
            return Err(TemplateError::NoCode);
        }
        let template = Template { channel, parts };
        match channel {
            Channel::Sms => {
                let longest = template.render(&Args {
                    code: Self::LONGEST_CODE,
                    app,
                    minutes: Self::LONGEST_MINUTES,
                });
                let count = segments(&longest).count;
                if count > Self::MAX_SMS_SEGMENTS {
                    return Err(TemplateError::TooManySegments(count));
                }
            }
            Channel::Voice if text.chars().count() > Self::MAX_VOICE_CHARS => return Err(TemplateError::TooLong),
            Channel::Voice => {}
        }
        Ok(template)
    }

    /// A template as stored by a flow (checked when it was saved): only its
    /// placeholders are read again, nothing is measured.
    pub(super) fn stored(channel: Channel, text: &str) -> Option<Template> {
        let parts = parts(text).ok()?;
        parts.contains(&Part::Code).then_some(Template { channel, parts })
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The text with its placeholders filled; in a voice template the
    /// code's digits are set apart so they are read one by one.
    pub fn render(&self, args: &Args) -> String {
        let code = self.channel.code(args.code);
        let minutes = args.minutes.max(1).to_string();
        let mut out = String::with_capacity(self.len_hint() + code.len() + args.app.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Code => out.push_str(&code),
                Part::App => out.push_str(args.app),
                Part::Minutes => out.push_str(&minutes),
            }
        }
        out
    }

    fn len_hint(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                _ => 4,
            })
            .sum()
    }
}

/// The flow's template for `locale`, else for its base language.
pub fn pick(templates: &Templates, locale: Locale) -> Option<&Template> {
    templates
        .get(&locale)
        .or_else(|| locale.base().and_then(|base| templates.get(&base)))
}

fn parts(text: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(TemplateError::StrayBrace);
        }
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find(['{', '}']).filter(|i| after[*i..].starts_with('}'));
        let Some(close) = close else {
            return Err(TemplateError::StrayBrace);
        };
        parts.push(match after[..close].trim() {
            "code" => Part::Code,
            "app" => Part::App,
            "minutes" => Part::Minutes,
            other => return Err(TemplateError::UnknownPlaceholder(other.chars().take(40).collect())),
        });
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::locale::tests::ACME as ARGS;

    #[test]
    fn placeholders_are_filled_and_voice_codes_are_read_digit_by_digit() {
        let sms = Template::parse(Channel::Sms, "{app}: {code} ({ minutes } min)", "Acme").unwrap();
        assert_eq!(sms.render(&ARGS), "Acme: 123456 (10 min)");
        let voice = Template::parse(Channel::Voice, "Code {code}", "Acme").unwrap();
        assert_eq!(voice.render(&ARGS), "Code 1, 2, 3, 4, 5, 6");
        assert_eq!(voice.channel(), Channel::Voice);
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let parse = |text: &str| Template::parse(Channel::Sms, text, "Acme");
        assert_eq!(parse("Your code is ready"), Err(TemplateError::NoCode));
        assert_eq!(parse(""), Err(TemplateError::NoCode));
        assert_eq!(
            parse("{code} {name}"),
            Err(TemplateError::UnknownPlaceholder("name".into()))
        );
        assert_eq!(
            parse("{code} {}"),
            Err(TemplateError::UnknownPlaceholder(String::new()))
        );
        assert_eq!(parse("{code"), Err(TemplateError::StrayBrace));
        assert_eq!(parse("{code}}"), Err(TemplateError::StrayBrace));
        assert_eq!(parse("code} {code}"), Err(TemplateError::StrayBrace));
        assert_eq!(parse("{{code}}"), Err(TemplateError::StrayBrace));
        assert_eq!(
            TemplateError::UnknownPlaceholder("name".into()).to_string(),
            "unknown placeholder {name}: use {code}, {app} or {minutes}"
        );
    }

    #[test]
    fn an_sms_may_take_two_segments_with_the_longest_code_but_not_three() {
        // 306 GSM septets is two parts; the code placeholder renders to 10.
        let fits = format!("{}{{code}}", "a".repeat(296));
        assert!(Template::parse(Channel::Sms, &fits, "Acme").is_ok());
        let over = format!("{}{{code}}", "a".repeat(297));
        assert_eq!(
            Template::parse(Channel::Sms, &over, "Acme"),
            Err(TemplateError::TooManySegments(3))
        );
        // The app's name counts too, and so does its alphabet.
        let text = format!("{}{{code}} {{app}}", "a".repeat(120));
        assert!(Template::parse(Channel::Sms, &text, "Acme").is_ok());
        assert_eq!(
            Template::parse(Channel::Sms, &text, "Ácmé"),
            Err(TemplateError::TooManySegments(3))
        );
        // A voice template has no segments, only a bound.
        let long = format!("{}{{code}}", "a".repeat(480));
        assert!(Template::parse(Channel::Voice, &long, "Acme").is_ok());
        let longer = format!("{}{{code}}", "a".repeat(500));
        assert_eq!(
            Template::parse(Channel::Voice, &longer, "Acme"),
            Err(TemplateError::TooLong)
        );
    }

    #[test]
    fn the_locales_template_wins_then_its_base_languages_then_none() {
        let template = |text: &str| Template::parse(Channel::Sms, text, "Acme").unwrap();
        let mut own = Templates::new();
        own.insert(Locale::Pt, template("PT {code}"));
        assert_eq!(
            pick(&own, Locale::PtBr).map(|t| t.render(&ARGS)).as_deref(),
            Some("PT 123456")
        );
        own.insert(Locale::PtBr, template("BR {code}"));
        assert_eq!(
            pick(&own, Locale::PtBr).map(|t| t.render(&ARGS)).as_deref(),
            Some("BR 123456")
        );
        assert_eq!(
            pick(&own, Locale::Pt).map(|t| t.render(&ARGS)).as_deref(),
            Some("PT 123456")
        );
        assert!(pick(&own, Locale::Es).is_none());
        own.insert(Locale::ZhCn, template("CN {code}"));
        assert!(pick(&own, Locale::ZhHk).is_none());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_what_parses_renders_the_code(text in "[a-z {}]{0,60}") {
            if let Ok(template) = Template::parse(Channel::Sms, &text, "Acme") {
                let text = template.render(&Args { code: "98765", ..ARGS });
                prop_assert!(text.contains("98765"), "{}", text);
            }
        }

        #[test]
        fn text_without_braces_round_trips(text in "[^{}]{0,40}") {
            let template = Template::parse(Channel::Sms, &format!("{text}{{code}}"), "").unwrap();
            prop_assert_eq!(template.render(&ARGS), format!("{text}123456"));
        }
    }
}
