//! Which built-in locale a country speaks by default, for a request that
//! names no language. One language per region: the majority's, or the one
//! its OTP messages are usually sent in. India stays English (Hindi is one
//! of many languages there; banks and apps send codes in English), as do
//! Singapore and the Philippines. Belgium is Dutch and Switzerland German
//! (their majorities); Cyprus is Greek; the Maghreb Arabic.

use super::Locale;

const REGIONS: &[(Locale, &[&str])] = &[
    (
        Locale::Es,
        &[
            "ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "GT", "CU", "BO", "DO", "HN", "PY", "SV", "NI", "CR", "PA",
            "UY", "GQ", "PR", "EA", "IC",
        ],
    ),
    (Locale::Pt, &["PT", "AO", "MZ", "CV", "GW", "ST", "TL"]),
    (Locale::PtBr, &["BR"]),
    (
        Locale::Fr,
        &[
            "FR", "MC", "LU", "SN", "CI", "ML", "BF", "NE", "TG", "BJ", "GN", "CM", "CD", "CG", "GA", "MG", "HT", "RE",
            "GP", "MQ", "GF", "YT", "PF", "NC", "PM", "BL", "MF", "WF", "DJ", "KM", "TD", "CF", "BI",
        ],
    ),
    (Locale::De, &["DE", "AT", "CH", "LI"]),
    (Locale::It, &["IT", "SM", "VA"]),
    (Locale::Nl, &["NL", "BE", "SR", "AW", "CW", "SX", "BQ"]),
    (Locale::Pl, &["PL"]),
    (Locale::Ru, &["RU", "BY", "KZ", "KG"]),
    (Locale::Uk, &["UA"]),
    (Locale::Tr, &["TR"]),
    (
        Locale::Ar,
        &[
            "SA", "AE", "EG", "IQ", "JO", "KW", "LB", "LY", "MA", "OM", "QA", "SY", "TN", "YE", "BH", "DZ", "SD", "PS",
            "MR", "EH",
        ],
    ),
    (Locale::He, &["IL"]),
    (Locale::Id, &["ID"]),
    (Locale::Ms, &["MY", "BN"]),
    (Locale::Th, &["TH"]),
    (Locale::Vi, &["VN"]),
    (Locale::ZhCn, &["CN"]),
    (Locale::ZhHk, &["HK", "MO"]),
    (Locale::ZhTw, &["TW"]),
    (Locale::Ja, &["JP"]),
    (Locale::Ko, &["KR"]),
    (Locale::Sv, &["SE", "AX"]),
    (Locale::Da, &["DK", "GL", "FO"]),
    (Locale::Nb, &["NO", "SJ"]),
    (Locale::Fi, &["FI"]),
    (Locale::Cs, &["CZ"]),
    (Locale::Ro, &["RO", "MD"]),
    (Locale::El, &["GR", "CY"]),
];

pub(super) fn for_region(region: &str) -> Option<Locale> {
    REGIONS
        .iter()
        .find(|(_, regions)| regions.iter().any(|r| r.eq_ignore_ascii_case(region)))
        .map(|(locale, _)| *locale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CountryCode, PhoneNumber};

    fn phone(country: &str, national: &str) -> PhoneNumber {
        let country = CountryCode::parse(country).unwrap();
        PhoneNumber::parse(country, national).unwrap()
    }

    #[test]
    fn the_numbers_country_picks_the_locale() {
        assert_eq!(Locale::for_phone(&phone("+55", "11987654321")), Locale::PtBr);
        assert_eq!(Locale::for_phone(&phone("+33", "612345678")), Locale::Fr);
        assert_eq!(Locale::for_phone(&phone("+507", "61234567")), Locale::Es);
        assert_eq!(Locale::for_phone(&phone("+852", "51234567")), Locale::ZhHk);
        assert_eq!(Locale::for_phone(&phone("+1", "4155550123")), Locale::En);
        assert_eq!(Locale::for_phone(&phone("+44", "7911123456")), Locale::En);
    }

    #[test]
    fn regions_are_matched_case_insensitively_and_unknown_ones_give_none() {
        assert_eq!(Locale::for_region("br"), Some(Locale::PtBr));
        assert_eq!(Locale::for_region("MX"), Some(Locale::Es));
        assert_eq!(Locale::for_region("IN"), None);
        assert_eq!(Locale::for_region(""), None);
    }

    #[test]
    fn no_region_is_listed_twice() {
        let mut all: Vec<&str> = REGIONS
            .iter()
            .flat_map(|(_, regions)| regions.iter().copied())
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
