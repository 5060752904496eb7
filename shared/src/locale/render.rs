//! Rendering the built-in texts with Fluent, and the TwiML of a call.
//! The bundles are parsed once per process (`LazyLock`); a render formats
//! one pattern into one `String`.

use super::template::{Channel, Templates};
use super::{pick, Locale};
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::sync::LazyLock;
use unic_langid::LanguageIdentifier;

/// What a text is rendered with.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    /// The code, digits only.
    pub code: &'a str,
    /// The app's (project's) name, as the client gave it.
    pub app: &'a str,
    /// How long the code lives; 0 is said as 1 (a code always has a minute).
    pub minutes: u32,
}

/// The message of each `.ftl` file that the SMS uses.
pub(super) const SMS: &str = "sms";
/// The message of each `.ftl` file that a call says (twice).
pub(super) const VOICE: &str = "voice";

type Bundle = FluentBundle<FluentResource>;

/// One bundle per locale, in `Locale::ALL` order.
static BUNDLES: LazyLock<Vec<Bundle>> = LazyLock::new(|| Locale::ALL.iter().map(|l| bundle(*l).0).collect());

/// Builds a locale's bundle, with the problems found on the way (a syntax
/// error in an `.ftl`, a duplicate message): tests require none.
pub(super) fn bundle(locale: Locale) -> (Bundle, Vec<String>) {
    let mut problems = Vec::new();
    let resource = FluentResource::try_new(locale.ftl().to_owned()).unwrap_or_else(|(partial, errors)| {
        problems.extend(errors.iter().map(|e| format!("{}: {e:?}", locale.tag())));
        partial
    });
    // A static tag of the table: tests check that each one parses.
    let language: LanguageIdentifier = locale.plural_language().parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![language]);
    // Fluent wraps placeables in U+2068/U+2069 by default: invisible, and
    // they would turn every SMS into UCS-2.
    bundle.set_use_isolating(false);
    if let Err(errors) = bundle.add_resource(resource) {
        problems.extend(errors.iter().map(|e| format!("{}: {e:?}", locale.tag())));
    }
    (bundle, problems)
}

/// Formats message `id` of `locale`'s bundle; English's when the locale
/// lacks it (tests make sure none does).
pub(super) fn format(locale: Locale, id: &str, code: &str, app: &str, minutes: u32) -> String {
    // The enum's order is `Locale::ALL`'s (one macro writes both).
    let Some(bundle) = BUNDLES.get(locale as usize) else {
        return String::new();
    };
    let Some(pattern) = bundle
        .get_message(id)
        .and_then(|message| message.value())
        .or_else(|| BUNDLES.first()?.get_message(id)?.value())
    else {
        return String::new();
    };
    let mut args = FluentArgs::with_capacity(3);
    args.set("code", FluentValue::from(code));
    args.set("app", FluentValue::from(app));
    args.set("minutes", FluentValue::from(minutes.max(1)));
    // Errors here are missing arguments, which the three above rule out.
    let mut errors = Vec::new();
    bundle.format_pattern(pattern, Some(&args), &mut errors).into_owned()
}

/// The built-in SMS text: `Your Acme verification code is 123456. It
/// expires in 10 minutes.`
pub fn sms_text(locale: Locale, args: &Args) -> String {
    format(locale, SMS, args.code, args.app, args.minutes)
}

/// The built-in sentence a call says, the code's digits apart.
pub fn voice_text(locale: Locale, args: &Args) -> String {
    format(locale, VOICE, &spaced(args.code), args.app, args.minutes)
}

/// The TwiML of a call that reads the built-in sentence twice.
pub fn voice_twiml(locale: Locale, args: &Args) -> String {
    twiml(locale, &voice_text(locale, args))
}

/// The SMS for `locale`: the flow's own template (for the locale, then its
/// base language), else the built-in text.
pub fn sms(locale: Locale, args: &Args, own: &Templates) -> String {
    match pick(own, locale) {
        Some(template) => template.render(args),
        None => sms_text(locale, args),
    }
}

/// The TwiML of a call for `locale`, with the same fallback as [`sms`].
pub fn voice(locale: Locale, args: &Args, own: &Templates) -> String {
    match pick(own, locale) {
        Some(template) => twiml(locale, &template.render(args)),
        None => voice_twiml(locale, args),
    }
}

/// The code as a call reads it: digit by digit, a comma (a pause) between.
pub(super) fn spaced(code: &str) -> String {
    let mut out = String::with_capacity(code.len() * 3);
    for (i, c) in code.chars().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push(c);
    }
    out
}

/// `<Response>` with `sentence` said twice, a pause between, in the
/// locale's TTS language. The sentence is XML-escaped: it carries the
/// client's app name.
pub fn twiml(locale: Locale, sentence: &str) -> String {
    let say = format!(
        "<Say language=\"{}\">{}</Say>",
        escape(locale.tts_language()),
        escape(sentence)
    );
    format!("<Response>{say}<Pause length=\"1\"/>{say}</Response>")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all: dropped rather than sent.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

impl Channel {
    /// How the code appears in this channel's text.
    pub(super) fn code(self, code: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Channel::Sms => code.into(),
            Channel::Voice => spaced(code).into(),
        }
    }
}
