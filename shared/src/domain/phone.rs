//! Country calling codes and national phone numbers, checked against
//! libphonenumber's metadata (through the `phonenumber` crate).

use phonenumber::metadata::DATABASE;
use std::fmt;

/// A country calling code such as `+507`: `+` and 1 to 4 digits, known to
/// libphonenumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CountryCode(u16);

/// A phone number that is not possible for its country.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPhone {
    #[error("country code must be '+' and 1-4 digits of a known calling code")]
    CountryCode,
    #[error("phone must be a possible number for its country")]
    Number,
}

impl CountryCode {
    pub fn parse(value: &str) -> Result<Self, InvalidPhone> {
        let digits = value.strip_prefix('+').ok_or(InvalidPhone::CountryCode)?;
        if digits.is_empty()
            || digits.len() > 4
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(InvalidPhone::CountryCode);
        }
        let code: u16 = digits.parse().map_err(|_| InvalidPhone::CountryCode)?;
        if DATABASE.by_code(&code).is_none() {
            return Err(InvalidPhone::CountryCode);
        }
        Ok(Self(code))
    }

    pub fn value(self) -> u16 {
        self.0
    }

    /// ISO 3166-1 alpha-2 of the code's main region (`+1` is `US`, `+44`
    /// `GB`), for when a country code is all there is (a text's preview).
    pub fn main_region(self) -> Option<&'static str> {
        DATABASE.region(&self.0)?.first().copied()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// A phone number in its canonical form: the national significant number
/// (trunk prefixes such as the UK's `0` or the NANP's `1` removed), so one
/// number is one number whatever way it was typed. Its length must be one of
/// its country's (libphonenumber "possible"); whether it can receive an SMS
/// is known too (`can_receive_sms`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    country: CountryCode,
    /// The national significant number: what is stored and compared.
    national: String,
    /// `+` country code and the national significant number.
    e164: String,
    /// libphonenumber's type for the number.
    kind: phonenumber::Type,
    /// ISO 3166-1 alpha-2 of the number's region (`+1` is many countries).
    region: Option<String>,
}

impl PhoneNumber {
    /// Strips spaces, dashes, dots and parentheses, then parses the digits
    /// as a number of `country`.
    pub fn parse(country: CountryCode, raw: &str) -> Result<Self, InvalidPhone> {
        let digits = digits_of(raw)?;
        // Parsed as a national number of the code's main region, so a trunk
        // prefix typed after the country code (`+44 07911…`, `+1 1415…`) is
        // recognised as one and dropped.
        let parsed = phonenumber::parse(Some(main_region(country)?), &digits).map_err(|_| InvalidPhone::Number)?;
        if parsed.code().value() != country.value() {
            return Err(InvalidPhone::Number);
        }
        let national = parsed.national().to_string();
        if !is_possible(country, &national) {
            return Err(InvalidPhone::Number);
        }
        Ok(Self {
            country,
            e164: format!("+{}{}", country.value(), national),
            kind: parsed.number_type(&DATABASE),
            region: parsed.country().id().map(|id| format!("{id:?}")),
            national,
        })
    }

    /// A number written in international form: `+` (or `00`, the prefix
    /// most countries dial before one) and the country code, then the
    /// national number, as in `+1 (415) 555-0123` or `00507 6261 0001`.
    pub fn parse_international(raw: &str) -> Result<Self, InvalidPhone> {
        let trimmed = raw.trim_start_matches(SEPARATORS);
        let digits = match trimmed.strip_prefix('+') {
            Some(rest) => digits_of(rest)?,
            None => digits_of(trimmed)?
                .strip_prefix("00")
                .ok_or(InvalidPhone::Number)?
                .to_owned(),
        };
        // Calling codes are a prefix code (none begins another): the first
        // 1 to 3 digits that libphonenumber knows as one are the country's.
        let (country, national) = (1..=3)
            .filter_map(|length| {
                let code = CountryCode::parse(&format!("+{}", digits.get(..length)?)).ok()?;
                Some((code, &digits[length..]))
            })
            .next()
            .ok_or(InvalidPhone::CountryCode)?;
        Self::parse(country, national)
    }

    pub fn country(&self) -> CountryCode {
        self.country
    }

    /// The national significant number (canonical: no trunk prefix).
    pub fn national(&self) -> &str {
        &self.national
    }

    /// The number in E.164, as providers want it.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// ISO 3166-1 alpha-2 of the region the number belongs to, if known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// A number a voice call can reach: a mobile or fixed line (or either),
    /// VoIP or a personal number; not premium-rate, toll-free and the like.
    pub fn can_receive_call(&self) -> bool {
        matches!(
            self.kind,
            phonenumber::Type::Mobile
                | phonenumber::Type::FixedLineOrMobile
                | phonenumber::Type::FixedLine
                | phonenumber::Type::Voip
                | phonenumber::Type::PersonalNumber
        )
    }

    /// A valid mobile number (or one that may be either, as in the NANP):
    /// not premium-rate, shared-cost, UAN, toll-free, fixed-line and the like.
    pub fn can_receive_sms(&self) -> bool {
        matches!(
            self.kind,
            phonenumber::Type::Mobile | phonenumber::Type::FixedLineOrMobile
        )
    }
}

/// What may stand between the digits of a typed number.
pub const SEPARATORS: [char; 5] = [' ', '-', '.', '(', ')'];

/// The digits of a typed number, separators dropped: 1 to 17 of them.
pub fn digits_of(raw: &str) -> Result<String, InvalidPhone> {
    let digits: String = raw.chars().filter(|c| !SEPARATORS.contains(c)).collect();
    if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidPhone::Number);
    }
    Ok(digits)
}

/// The region libphonenumber treats as the main one for a calling code.
fn main_region(country: CountryCode) -> Result<phonenumber::country::Id, InvalidPhone> {
    let regions = DATABASE.by_code(&country.value()).ok_or(InvalidPhone::CountryCode)?;
    let main = regions
        .iter()
        .find(|meta| meta.is_main_country_for_code())
        .or_else(|| regions.first())
        .ok_or(InvalidPhone::CountryCode)?;
    main.id().parse().map_err(|_| InvalidPhone::CountryCode)
}

/// Whether `national` has one of the lengths `country` uses for any type of number.
fn is_possible(country: CountryCode, national: &str) -> bool {
    let Some(metadata) = DATABASE.by_code(&country.value()) else {
        return false;
    };
    let Ok(length) = u16::try_from(national.len()) else {
        return false;
    };
    metadata.iter().any(|meta| {
        let d = meta.descriptors();
        [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .chain([d.general()])
        .any(|descriptor| descriptor.possible_length().contains(&length))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn panama() -> CountryCode {
        CountryCode::parse("+507").unwrap()
    }

    #[test]
    fn seed_numbers_are_possible_mobiles() {
        let phone = PhoneNumber::parse(panama(), "6261-7737").unwrap();
        assert_eq!(phone.national(), "62617737");
        assert_eq!(phone.e164(), "+50762617737");
        assert!(phone.can_receive_sms());
        assert_eq!(phone.region(), Some("PA"));
        let us = PhoneNumber::parse(CountryCode::parse("+1").unwrap(), "(415) 555.2671").unwrap();
        assert_eq!(us.e164(), "+14155552671");
        assert_eq!(us.region(), Some("US"));
        let canada = PhoneNumber::parse(CountryCode::parse("+1").unwrap(), "416 555 0123").unwrap();
        assert_eq!(canada.region(), Some("CA"));
    }

    #[test]
    fn one_number_is_one_number_whatever_way_it_is_typed() {
        let uk = CountryCode::parse("+44").unwrap();
        let with_trunk = PhoneNumber::parse(uk, "07911 123456").unwrap();
        let without = PhoneNumber::parse(uk, "7911123456").unwrap();
        assert_eq!(with_trunk, without);
        assert_eq!(with_trunk.e164(), "+447911123456");
        assert!(with_trunk.can_receive_sms());
        let nanp = CountryCode::parse("+1").unwrap();
        assert_eq!(
            PhoneNumber::parse(nanp, "1 415 555 2671").unwrap().national(),
            PhoneNumber::parse(nanp, "415 555 2671").unwrap().national()
        );
    }

    #[test]
    fn an_international_number_carries_its_country() {
        for raw in [
            "+1 (415) 555-2671",
            "001 415 555 2671",
            " +14155552671",
            "+1 1 415 555 2671",
        ] {
            let phone = PhoneNumber::parse_international(raw).unwrap();
            assert_eq!(phone.e164(), "+14155552671", "{raw}");
        }
        let uk = PhoneNumber::parse_international("+44 (0)7911 123456").unwrap();
        assert_eq!((uk.country().value(), uk.national()), (44, "7911123456"));
        for raw in ["415 555 2671", "+", "00", "+999 1234567", "+1 415 555 267a", "+507 123"] {
            assert!(PhoneNumber::parse_international(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn numbers_that_cannot_receive_sms_are_told_apart() {
        let uk = CountryCode::parse("+44").unwrap();
        let premium = PhoneNumber::parse(uk, "909 876 5432").unwrap();
        assert!(!premium.can_receive_sms(), "premium rate");
        let landline = PhoneNumber::parse(uk, "20 7946 0958").unwrap();
        assert!(!landline.can_receive_sms(), "fixed line");
        let panama_fixed = PhoneNumber::parse(panama(), "300-1234").unwrap();
        assert!(!panama_fixed.can_receive_sms());
        assert!(panama_fixed.can_receive_call(), "a call reaches a fixed line");
        assert!(landline.can_receive_call());
    }

    #[test]
    fn impossible_numbers_are_refused() {
        assert_eq!(PhoneNumber::parse(panama(), "123"), Err(InvalidPhone::Number));
        assert_eq!(PhoneNumber::parse(panama(), "6261773712345"), Err(InvalidPhone::Number));
        assert_eq!(PhoneNumber::parse(panama(), "62a17737"), Err(InvalidPhone::Number));
        assert_eq!(PhoneNumber::parse(panama(), "' OR 1=1 --"), Err(InvalidPhone::Number));
    }

    #[test]
    fn country_codes_must_be_known() {
        assert!(CountryCode::parse("+57").is_ok());
        assert!(CountryCode::parse("57").is_err());
        assert!(CountryCode::parse("+").is_err());
        assert!(CountryCode::parse("+99999").is_err());
        assert!(CountryCode::parse("+999").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_keeps_only_digits(raw in "\\PC{0,40}") {
            if let Ok(phone) = PhoneNumber::parse(panama(), &raw) {
                prop_assert!(phone.national().bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(phone.e164().starts_with("+507"));
            }
        }

        #[test]
        fn parse_international_never_panics(raw in "[+0-9 ()-]{0,24}") {
            if let Ok(phone) = PhoneNumber::parse_international(&raw) {
                prop_assert!(phone.national().bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn country_code_parse_never_panics(raw in "\\PC{0,8}") {
            if let Ok(code) = CountryCode::parse(&raw) {
                prop_assert_eq!(code.to_string(), raw);
            }
        }
    }
}
