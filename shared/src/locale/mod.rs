//! The built-in locales and the texts a person receives in them (SMS and a
//! voice call), kept in Project Fluent files (`shared/locales/*.ftl`), plus a
//! flow's own templates, the TwiML of a call and SMS segment counting.
//!
//! A locale is a [`Locale`]: parsed from a BCP 47 tag (`es-CO` falls back to
//! `es`), or picked from a phone number's region. Texts are rendered with
//! [`Args`]: the code, the app's name and the minutes the code lives.

mod flow;
mod regions;
mod render;
mod segments;
mod template;
#[cfg(test)]
mod tests;

pub use flow::{append_autofill, is_app_hash, is_host_name, Autofill, FlowTemplates};
pub use render::{sms, sms_text, twiml, voice, voice_text, voice_twiml, Args};
pub use segments::{is_gsm7, segments, Encoding, Segments};
pub use template::{pick, Channel, Template, TemplateError, Templates};

use std::fmt;

macro_rules! locales {
    ($($variant:ident = $tag:literal, tts $tts:literal, whatsapp $whatsapp:literal;)*) => {
        /// One of the built-in locales: every one has an SMS and a voice text.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Locale {
            $($variant),*
        }

        impl Locale {
            /// Every built-in locale, in the order of the README's table.
            pub const ALL: &'static [Locale] = &[$(Locale::$variant),*];

            /// The canonical BCP 47 tag (`pt-BR`), as the API shows it.
            pub fn tag(self) -> &'static str {
                match self {
                    $(Locale::$variant => $tag),*
                }
            }

            /// The `language` attribute of Twilio's `<Say>` for this locale
            /// (a value of twilio-node's `SayLanguage`); Twilio then speaks
            /// with the account's default voice for that language.
            pub fn tts_language(self) -> &'static str {
                match self {
                    $(Locale::$variant => $tts),*
                }
            }

            /// The language code of a WhatsApp template in Meta's API
            /// (`pt_BR`, `zh_HK`: underscores, case as Meta lists them).
            pub fn whatsapp_language(self) -> &'static str {
                match self {
                    $(Locale::$variant => $whatsapp),*
                }
            }

            /// The locale's Fluent resource, compiled into the binary.
            fn ftl(self) -> &'static str {
                match self {
                    $(Locale::$variant => include_str!(concat!("../../locales/", $tag, ".ftl"))),*
                }
            }
        }
    };
}

locales! {
    En = "en", tts "en-US", whatsapp "en";
    Es = "es", tts "es-MX", whatsapp "es";
    Pt = "pt", tts "pt-PT", whatsapp "pt_PT";
    PtBr = "pt-BR", tts "pt-BR", whatsapp "pt_BR";
    Fr = "fr", tts "fr-FR", whatsapp "fr";
    De = "de", tts "de-DE", whatsapp "de";
    It = "it", tts "it-IT", whatsapp "it";
    Nl = "nl", tts "nl-NL", whatsapp "nl";
    Pl = "pl", tts "pl-PL", whatsapp "pl";
    Ru = "ru", tts "ru-RU", whatsapp "ru";
    Uk = "uk", tts "uk-UA", whatsapp "uk";
    Tr = "tr", tts "tr-TR", whatsapp "tr";
    Ar = "ar", tts "ar-XA", whatsapp "ar";
    He = "he", tts "he-IL", whatsapp "he";
    Hi = "hi", tts "hi-IN", whatsapp "hi";
    Id = "id", tts "id-ID", whatsapp "id";
    Ms = "ms", tts "ms-MY", whatsapp "ms";
    Th = "th", tts "th-TH", whatsapp "th";
    Vi = "vi", tts "vi-VN", whatsapp "vi";
    ZhCn = "zh-CN", tts "cmn-CN", whatsapp "zh_CN";
    ZhHk = "zh-HK", tts "yue-HK", whatsapp "zh_HK";
    ZhTw = "zh-TW", tts "cmn-TW", whatsapp "zh_TW";
    Ja = "ja", tts "ja-JP", whatsapp "ja";
    Ko = "ko", tts "ko-KR", whatsapp "ko";
    Sv = "sv", tts "sv-SE", whatsapp "sv";
    Da = "da", tts "da-DK", whatsapp "da";
    Nb = "nb", tts "nb-NO", whatsapp "nb";
    Fi = "fi", tts "fi-FI", whatsapp "fi";
    Cs = "cs", tts "cs-CZ", whatsapp "cs";
    Ro = "ro", tts "ro-RO", whatsapp "ro";
    El = "el", tts "el-GR", whatsapp "el";
}

/// A language tag that is not BCP 47, or whose language has no built-in
/// locale (the API answers `400:invalid_language`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("language must be a BCP 47 tag of a built-in locale")]
pub struct UnknownLocale;

impl Locale {
    /// Parses a BCP 47 tag, case-insensitively, `_` taken as `-` (Java and
    /// WhatsApp spell `pt_BR`). The most specific built-in locale wins:
    /// `pt-BR` is its own, `pt-PT`/`pt-AO` fall back to `pt`, `es-CO` to
    /// `es`. Chinese goes by script, then region: Traditional (`zh-Hant`,
    /// `zh-TW`) is `zh-TW`, except Hong Kong and Macau (`zh-HK`, `zh-MO`,
    /// Cantonese `yue`) which are `zh-HK`; anything else `zh` is `zh-CN`.
    /// Legacy codes `iw`, `in`, `no` and Nynorsk `nn` map to `he`, `id`,
    /// `nb`. Extensions and private-use subtags (`-u-…`, `-x-…`) are checked
    /// for syntax and ignored.
    pub fn parse(tag: &str) -> Result<Locale, UnknownLocale> {
        let subtags = Subtags::parse(tag)?;
        let language = match subtags.language.as_str() {
            "iw" => "he",
            "in" => "id",
            "no" | "nn" => "nb",
            other => other,
        };
        let script = subtags.script.as_deref();
        let region = subtags.region.as_deref();
        match language {
            "zh" | "yue" => Ok(chinese(language, script, region)),
            "pt" if region == Some("br") => Ok(Locale::PtBr),
            _ => Locale::ALL
                .iter()
                .copied()
                .find(|locale| locale.tag() == language)
                .ok_or(UnknownLocale),
        }
    }

    /// The locale whose templates a flow's template lookup tries next:
    /// `pt-BR` → `pt`. Chinese locales have none (their scripts differ, so
    /// the built-in text in the right script beats another's template).
    pub fn base(self) -> Option<Locale> {
        match self {
            Locale::PtBr => Some(Locale::Pt),
            _ => None,
        }
    }

    /// The locale a number's region (ISO 3166-1 alpha-2, any case) speaks
    /// by default, if it is a built-in one.
    pub fn for_region(region: &str) -> Option<Locale> {
        regions::for_region(region)
    }

    /// The locale when a request and its flow give none: the one of the
    /// number's region, else English.
    pub fn for_phone(phone: &crate::domain::PhoneNumber) -> Locale {
        phone.region().and_then(Locale::for_region).unwrap_or(Locale::En)
    }

    /// The language identifier whose CLDR plural rules the texts follow.
    /// European Portuguese has its own (`pt` alone is Brazil's in CLDR).
    fn plural_language(self) -> &'static str {
        match self {
            Locale::Pt => "pt-PT",
            other => other.tag(),
        }
    }
}

impl Locale {
    /// The canonical tag, as stored in `phone_validations.language`.
    pub fn as_str(self) -> &'static str {
        self.tag()
    }
}

impl std::str::FromStr for Locale {
    type Err = UnknownLocale;
    fn from_str(tag: &str) -> Result<Self, Self::Err> {
        Locale::parse(tag)
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl serde::Serialize for Locale {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.tag())
    }
}

impl<'de> serde::Deserialize<'de> for Locale {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tag = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Locale::parse(&tag).map_err(serde::de::Error::custom)
    }
}

// Stored as its canonical tag in `text` columns (`phone_validations.language`).
impl sqlx::Type<sqlx::Postgres> for Locale {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for Locale {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.tag(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Locale {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Locale::parse(text)?)
    }
}

// The document lists the canonical tags; requests may also send any BCP 47
// tag that falls back to one of them (`es-CO`), which the description says.
impl utoipa::PartialSchema for Locale {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Locale::ALL.iter().map(|l| l.tag())))
            .description(Some(
                "A built-in locale (BCP 47). A request may also send a more specific tag of one of these \
                 languages (`es-CO` is `es`, `pt-PT` is `pt`); objects show the canonical tag.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Locale {
    fn name() -> std::borrow::Cow<'static, str> {
        "Language".into()
    }
}

fn chinese(language: &str, script: Option<&str>, region: Option<&str>) -> Locale {
    let hong_kong = matches!(region, Some("hk" | "mo"));
    match (language, script) {
        ("yue", _) => Locale::ZhHk,
        (_, Some("hans")) => Locale::ZhCn,
        (_, Some("hant")) if hong_kong => Locale::ZhHk,
        (_, Some("hant")) => Locale::ZhTw,
        _ if hong_kong => Locale::ZhHk,
        _ if region == Some("tw") => Locale::ZhTw,
        _ => Locale::ZhCn,
    }
}

/// The parts of a BCP 47 tag that choose a locale, lowercased.
struct Subtags {
    language: String,
    script: Option<String>,
    region: Option<String>,
}

impl Subtags {
    /// Longer than any real tag worth matching; bounds the work on input.
    const MAX_LEN: usize = 64;

    fn parse(tag: &str) -> Result<Subtags, UnknownLocale> {
        if tag.is_empty() || tag.len() > Self::MAX_LEN {
            return Err(UnknownLocale);
        }
        let mut parts = tag.split(['-', '_']).map(str::to_ascii_lowercase);
        let language = parts.next().ok_or(UnknownLocale)?;
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(UnknownLocale);
        }
        let mut subtags = Subtags {
            language,
            script: None,
            region: None,
        };
        let mut in_extension = false;
        for part in parts {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(UnknownLocale);
            }
            let alphabetic = part.bytes().all(|b| b.is_ascii_alphabetic());
            if in_extension {
                continue;
            }
            match part.len() {
                1 => in_extension = true,
                // Extended language (`zh-yue`): the language it names.
                3 if alphabetic && subtags.script.is_none() && subtags.region.is_none() => {
                    subtags.language = part;
                }
                4 if alphabetic && subtags.script.is_none() && subtags.region.is_none() => {
                    subtags.script = Some(part);
                }
                2 if alphabetic && subtags.region.is_none() => subtags.region = Some(part),
                3 if part.bytes().all(|b| b.is_ascii_digit()) && subtags.region.is_none() => {
                    subtags.region = Some(part);
                }
                // Variants (`de-DE-1996`) do not change the locale.
                _ => {}
            }
        }
        Ok(subtags)
    }
}
