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
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// A national number that libphonenumber deems possible for its country
/// (its length is one of the country's number lengths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    country: CountryCode,
    /// The digits as the client gave them, punctuation stripped.
    national: String,
    /// `+` country code and the national significant number.
    e164: String,
}

impl PhoneNumber {
    /// Strips spaces, dashes, dots and parentheses, then checks the digits.
    pub fn parse(country: CountryCode, raw: &str) -> Result<Self, InvalidPhone> {
        let national: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if national.is_empty() || national.len() > 17 || !national.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidPhone::Number);
        }
        let full = format!("+{}{}", country.value(), national);
        let parsed = phonenumber::parse(None, &full).map_err(|_| InvalidPhone::Number)?;
        if parsed.code().value() != country.value() {
            return Err(InvalidPhone::Number);
        }
        let significant = parsed.national().to_string();
        let metadata = DATABASE.by_code(&country.value()).ok_or(InvalidPhone::Number)?;
        let length = u16::try_from(significant.len()).map_err(|_| InvalidPhone::Number)?;
        let possible = metadata.iter().any(|meta| {
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
        });
        if !possible {
            return Err(InvalidPhone::Number);
        }
        Ok(Self {
            country,
            e164: format!("+{}{}", country.value(), significant),
            national,
        })
    }

    pub fn country(&self) -> CountryCode {
        self.country
    }

    pub fn national(&self) -> &str {
        &self.national
    }

    /// The number in E.164, as providers want it.
    pub fn e164(&self) -> &str {
        &self.e164
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn panama() -> CountryCode {
        CountryCode::parse("+507").unwrap()
    }

    #[test]
    fn seed_numbers_are_possible() {
        let phone = PhoneNumber::parse(panama(), "6261-7737").unwrap();
        assert_eq!(phone.national(), "62617737");
        assert_eq!(phone.e164(), "+50762617737");
        let us = PhoneNumber::parse(CountryCode::parse("+1").unwrap(), "(415) 555.2671").unwrap();
        assert_eq!(us.e164(), "+14155552671");
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
        fn country_code_parse_never_panics(raw in "\\PC{0,8}") {
            if let Ok(code) = CountryCode::parse(&raw) {
                prop_assert_eq!(code.to_string(), raw);
            }
        }
    }
}
