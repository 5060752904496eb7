//! Tests over every locale: the `.ftl` files, the texts' shape, parsing,
//! and the README's table of locales.

use super::render::{bundle, SMS, VOICE};
use super::*;
use proptest::prelude::*;

/// What the locale's tests render texts with.
pub(super) const ACME: Args = Args {
    code: "123456",
    app: "Acme",
    minutes: 10,
};

#[test]
fn every_ftl_parses_and_has_both_messages() {
    for locale in Locale::ALL {
        let (bundle, problems) = bundle(*locale);
        assert_eq!(problems, Vec::<String>::new());
        for id in [SMS, VOICE] {
            assert!(
                bundle.get_message(id).and_then(|m| m.value()).is_some(),
                "{locale}: {id}"
            );
        }
        assert!(locale
            .plural_language()
            .parse::<unic_langid::LanguageIdentifier>()
            .is_ok());
    }
    assert!(Locale::ALL.len() >= 30);
}

#[test]
fn english_and_spanish_are_word_for_word_what_the_service_sent() {
    let text = |locale, code, minutes| {
        sms_text(
            locale,
            &Args {
                code,
                app: "Acme",
                minutes,
            },
        )
    };
    assert_eq!(
        text(Locale::En, "123456", 10),
        "Your Acme verification code is 123456. It expires in 10 minutes."
    );
    assert_eq!(
        text(Locale::Es, "123456", 10),
        "Tu código de verificación de Acme es 123456. Vence en 10 minutos."
    );
    assert_eq!(
        text(Locale::En, "1234", 0),
        "Your Acme verification code is 1234. It expires in 1 minute."
    );
    assert_eq!(
        text(Locale::En, "1234", 1),
        "Your Acme verification code is 1234. It expires in 1 minute."
    );
    assert_eq!(
        text(Locale::Es, "1234", 1),
        "Tu código de verificación de Acme es 1234. Vence en 1 minuto."
    );
}

#[test]
fn every_text_carries_the_code_once_in_sms_and_twice_in_a_call_without_isolation_marks() {
    let app = "Zeta & <Co> \"x\"";
    for locale in Locale::ALL {
        for minutes in [1, 2, 3, 5, 10, 11, 21, 22, 25, 100, 101, 1440] {
            let args = Args {
                code: "4071",
                app,
                minutes,
            };
            let sms = sms_text(*locale, &args);
            assert_eq!(sms.matches("4071").count(), 1, "{locale} {minutes}: {sms}");
            assert_eq!(sms.matches(app).count(), 1, "{locale}: {sms}");
            assert!(!sms.contains(['\u{2068}', '\u{2069}']), "{locale}: isolation marks");
            assert!(!sms.contains(['{', '}', '$']), "{locale}: unresolved {sms}");
            let call = voice_twiml(*locale, &args);
            assert_eq!(call.matches("4, 0, 7, 1").count(), 2, "{locale}: {call}");
            assert!(call.contains("Zeta &amp; &lt;Co&gt; &quot;x&quot;"), "{locale}: {call}");
            assert!(!call.contains(['\u{2068}', '\u{2069}']));
        }
    }
}

#[test]
fn fluent_would_have_added_isolation_marks_had_they_not_been_turned_off() {
    let (mut bundle, _) = bundle(Locale::En);
    bundle.set_use_isolating(true);
    let pattern = bundle.get_message(VOICE).and_then(|m| m.value()).unwrap();
    let mut args = fluent_bundle::FluentArgs::new();
    args.set("app", "Acme");
    args.set("code", "1");
    let text = bundle.format_pattern(pattern, Some(&args), &mut vec![]);
    assert!(text.contains('\u{2068}'));
    assert!(!voice_text(Locale::En, &ACME).contains('\u{2068}'));
}

/// Where a fluent, unabbreviated text cannot fit one UCS-2 segment (70
/// code units) with a 10-digit code and a 20-character name.
const TWO_SEGMENTS: &[(Locale, &str)] = &[(
    Locale::Es,
    "kept word for word (clients' tests rely on it); \"código\" and \"verificación\" make it UCS-2",
)];

#[test]
fn every_builtin_sms_fits_one_segment_with_the_longest_code_and_a_20_character_name() {
    for locale in Locale::ALL {
        let args = Args {
            code: "0123456789",
            app: "Twenty Characters Ok",
            minutes: 10,
        };
        assert_eq!(args.app.len(), 20);
        let text = sms_text(*locale, &args);
        let expected = if TWO_SEGMENTS.iter().any(|(l, _)| l == locale) {
            2
        } else {
            1
        };
        assert_eq!(
            segments(&text).count,
            expected,
            "{locale}: {} units: {text}",
            segments(&text).units
        );
    }
}

#[test]
fn plural_forms_follow_each_languages_cldr_rules() {
    let minutes = |locale, minutes| sms_text(locale, &Args { minutes, ..ACME });
    let cases: &[(Locale, u32, &str)] = &[
        (Locale::Pl, 1, "przez 1 minutę."),
        (Locale::Pl, 2, "przez 2 minuty."),
        (Locale::Pl, 5, "przez 5 minut."),
        (Locale::Pl, 12, "przez 12 minut."),
        (Locale::Pl, 22, "przez 22 minuty."),
        (Locale::Ru, 1, "Действует 1 минуту."),
        (Locale::Ru, 21, "Действует 21 минуту."),
        (Locale::Ru, 3, "Действует 3 минуты."),
        (Locale::Ru, 11, "Действует 11 минут."),
        (Locale::Uk, 22, "Діє 22 хвилини."),
        (Locale::Uk, 10, "Діє 10 хвилин."),
        (Locale::Cs, 1, "Platí 1 minutu."),
        (Locale::Cs, 4, "Platí 4 minuty."),
        (Locale::Cs, 10, "Platí 10 minut."),
        (Locale::Ro, 1, "în 1 minut."),
        (Locale::Ro, 19, "în 19 minute."),
        (Locale::Ro, 20, "în 20 de minute."),
        (Locale::Ar, 1, "لمدة دقيقة واحدة."),
        (Locale::Ar, 2, "لمدة دقيقتين."),
        (Locale::Ar, 10, "لمدة 10 دقائق."),
        (Locale::Ar, 11, "لمدة 11 دقيقة."),
        (Locale::Ar, 100, "لمدة 100 دقيقة."),
        (Locale::He, 1, "בתוקף לדקה אחת."),
        (Locale::He, 2, "בתוקף לשתי דקות."),
        (Locale::He, 10, "בתוקף ל-10 דקות."),
        (Locale::Fr, 1, "dans 1 minute."),
        (Locale::Fr, 2, "dans 2 minutes."),
        (Locale::PtBr, 1, "em 1 minuto."),
        (Locale::Pt, 21, "em 21 minutos."),
        (Locale::El, 1, "σε 1 λεπτό."),
        (Locale::De, 1, "für 1 Minute."),
        (Locale::Nb, 1, "om 1 minutt."),
    ];
    for (locale, n, ending) in cases {
        let text = minutes(*locale, *n);
        assert!(text.ends_with(ending), "{locale} {n}: {text}");
    }
}

#[test]
fn twiml_says_the_sentence_twice_in_the_locales_tts_language() {
    assert_eq!(
        voice_twiml(Locale::PtBr, &ACME),
        "<Response><Say language=\"pt-BR\">Seu código de verificação Acme é 1, 2, 3, 4, 5, 6.</Say>\
         <Pause length=\"1\"/><Say language=\"pt-BR\">Seu código de verificação Acme é 1, 2, 3, 4, 5, 6.</Say>\
         </Response>"
    );
    assert!(voice_twiml(Locale::ZhHk, &ACME).contains("language=\"yue-HK\""));
    let call = twiml(Locale::En, "a\u{0}b\u{7}'c'");
    assert!(call.contains(">ab&apos;c&apos;<"), "{call}");
}

#[test]
fn a_flows_template_replaces_the_builtin_text_and_falls_back_to_it() {
    let mut own = Templates::new();
    own.insert(
        Locale::Pt,
        Template::parse(Channel::Sms, "{app}: {code}", "Acme").unwrap(),
    );
    assert_eq!(sms(Locale::PtBr, &ACME, &own), "Acme: 123456");
    assert_eq!(sms(Locale::Es, &ACME, &own), sms_text(Locale::Es, &ACME));
    let mut calls = Templates::new();
    calls.insert(
        Locale::En,
        Template::parse(Channel::Voice, "{app} code {code}", "Acme").unwrap(),
    );
    assert_eq!(
        voice(Locale::En, &ACME, &calls),
        twiml(Locale::En, "Acme code 1, 2, 3, 4, 5, 6")
    );
    assert_eq!(voice(Locale::Fr, &ACME, &calls), voice_twiml(Locale::Fr, &ACME));
}

#[test]
fn tags_resolve_to_the_most_specific_builtin_locale() {
    let cases: &[(&str, Locale)] = &[
        ("en", Locale::En),
        ("en-US", Locale::En),
        ("EN-gb", Locale::En),
        ("es-CO", Locale::Es),
        ("es-419", Locale::Es),
        ("es_MX", Locale::Es),
        ("pt", Locale::Pt),
        ("pt-PT", Locale::Pt),
        ("pt-BR", Locale::PtBr),
        ("pt_br", Locale::PtBr),
        ("zh", Locale::ZhCn),
        ("zh-CN", Locale::ZhCn),
        ("zh-SG", Locale::ZhCn),
        ("zh-Hans-HK", Locale::ZhCn),
        ("zh-Hant", Locale::ZhTw),
        ("zh-TW", Locale::ZhTw),
        ("zh-Hant-HK", Locale::ZhHk),
        ("zh-HK", Locale::ZhHk),
        ("zh-MO", Locale::ZhHk),
        ("yue", Locale::ZhHk),
        ("zh-yue-HK", Locale::ZhHk),
        ("iw", Locale::He),
        ("in", Locale::Id),
        ("no", Locale::Nb),
        ("nb-NO", Locale::Nb),
        ("de-DE-1996", Locale::De),
        ("fr-CA-u-ca-gregory", Locale::Fr),
        ("ar-x-private", Locale::Ar),
    ];
    for (tag, locale) in cases {
        assert_eq!(Locale::parse(tag), Ok(*locale), "{tag}");
    }
    for tag in [
        "",
        "xx",
        "x",
        "english",
        "en-",
        "-en",
        "en--US",
        "en US",
        "en-toolongsubtag",
        "é",
        "sr",
        "zz-BR",
    ] {
        assert_eq!(Locale::parse(tag), Err(UnknownLocale), "{tag:?}");
    }
    assert_eq!(Locale::parse(&format!("en-{}", "a".repeat(70))), Err(UnknownLocale));
}

#[test]
fn a_locale_serializes_as_its_tag_and_deserializes_through_parse() {
    assert_eq!(serde_json::to_string(&Locale::ZhHk).unwrap(), "\"zh-HK\"");
    assert_eq!(serde_json::from_str::<Locale>("\"es-CO\"").unwrap(), Locale::Es);
    assert!(serde_json::from_str::<Locale>("\"xx\"").is_err());
    assert_eq!(Locale::PtBr.to_string(), "pt-BR");
}

proptest! {
    #[test]
    fn parsing_never_panics_and_every_tag_parses_to_itself(tag in "\\PC{0,20}", i in 0usize..100) {
        let _ = Locale::parse(&tag);
        let locale = Locale::ALL[i % Locale::ALL.len()];
        prop_assert_eq!(Locale::parse(locale.tag()), Ok(locale));
        prop_assert_eq!(Locale::parse(&locale.tag().to_uppercase().replace('-', "_")), Ok(locale));
        prop_assert_eq!(Locale::parse(&format!("{}-x-{}", locale.tag(), "a")), Ok(locale));
    }

    #[test]
    fn case_and_separator_never_change_the_result(tag in "[a-zA-Z]{2,3}([-_][a-zA-Z0-9]{1,8}){0,3}") {
        let canonical = tag.to_ascii_lowercase().replace('_', "-");
        prop_assert_eq!(Locale::parse(&tag), Locale::parse(&canonical));
    }
}

/// The README's table of locales, as the code renders it.
fn readme_table() -> String {
    let mut table = String::from(
        "| Locale | Twilio `<Say language>` | WhatsApp template language | SMS (code 123456, app Acme, 10 minutes) |\n\
         | --- | --- | --- | --- |\n",
    );
    for locale in Locale::ALL {
        table.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            locale.tag(),
            locale.tts_language(),
            locale.whatsapp_language(),
            sms_text(*locale, &ACME)
        ));
    }
    table
}

#[test]
fn the_readme_table_of_locales_is_what_the_code_renders() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = readme_table();
    assert!(
        readme.contains(&table),
        "README.md's table of locales must be:\n{table}"
    );
}
