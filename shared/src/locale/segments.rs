//! How an SMS travels: GSM-7 when every character is in the GSM 03.38
//! alphabet, else UCS-2; and how many segments (parts of a concatenated
//! SMS, each billed) it takes. One part carries 160 septets or 70 UTF-16
//! code units; once split, each part loses room to its header: 153 and 67.

/// The alphabet an SMS is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    /// As `providerConfirmation.encoding` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units in a lone SMS, and in each part of a split one.
    fn capacity(self) -> (usize, usize) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }
}

/// A text's encoding, its length in that encoding's units (septets or
/// UTF-16 code units) and the number of segments it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    pub units: usize,
    pub count: usize,
}

const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Sent as an escape and the character: two septets each.
const EXTENSION: &str = "^{}\\[~]|€\u{0C}";

/// Septets of `c` in GSM-7, if it has any. The common ASCII cases are
/// matched first: every SMS the service sends is measured.
fn septets(c: char) -> Option<usize> {
    match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | ' ' | '.' | ',' | ':' => Some(1),
        c if BASIC.contains(c) => Some(1),
        c if EXTENSION.contains(c) => Some(2),
        _ => None,
    }
}

/// Whether every character of `text` is in the GSM 03.38 alphabet (its
/// basic set or its extension table); if not, the SMS must go as UCS-2.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| septets(c).is_some())
}

/// The encoding and segment count of `text`. A character is never split
/// between two parts (an escaped GSM character, a UTF-16 surrogate pair),
/// as handsets and providers do not split them either; an empty text is
/// one (empty) SMS.
pub fn segments(text: &str) -> Segments {
    let gsm_units: Option<usize> = text.chars().map(septets).sum();
    let (encoding, units) = match gsm_units {
        Some(units) => (Encoding::Gsm7, units),
        None => (Encoding::Ucs2, text.encode_utf16().count()),
    };
    let (single, part) = encoding.capacity();
    if units <= single {
        return Segments {
            encoding,
            units,
            count: 1,
        };
    }
    let width = |c: char| match encoding {
        Encoding::Gsm7 => septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    };
    let (mut count, mut used) = (1, 0);
    for c in text.chars() {
        let w = width(c);
        if used + w > part {
            count += 1;
            used = 0;
        }
        used += w;
    }
    Segments { encoding, units, count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spanish_codes_are_not_gsm7_and_english_ones_are() {
        assert!(is_gsm7(
            "Your Acme verification code is 123456. It expires in 10 minutes."
        ));
        assert!(!is_gsm7(
            "Tu código de verificación de Acme es 123456. Vence en 10 minutos."
        ));
        assert!(is_gsm7("Ñoño: 1234 [€]"));
        assert!(!is_gsm7("验证码 1234"));
    }

    #[test]
    fn limits_are_160_and_153_septets_or_70_and_67_code_units() {
        for (text, encoding, units) in [
            ("a".repeat(160), Encoding::Gsm7, 160),
            ("ж".repeat(70), Encoding::Ucs2, 70),
        ] {
            let one = Segments {
                encoding,
                units,
                count: 1,
            };
            assert_eq!(segments(&text), one);
        }
        // (a character, how many of it, how many segments)
        let counts = [
            ("a", 161, 2),
            ("a", 306, 2),
            ("a", 307, 3),
            ("ж", 71, 2),
            ("ж", 134, 2),
            ("ж", 135, 3),
            ("", 0, 1),
        ];
        for (c, n, count) in counts {
            assert_eq!(segments(&c.repeat(n)).count, count, "{n} × {c:?}");
        }
    }

    #[test]
    fn extension_characters_count_two_septets() {
        assert_eq!(segments("€").units, 2);
        assert_eq!(segments(&"€".repeat(80)).count, 1);
        assert_eq!(segments(&"€".repeat(81)).count, 2);
        // 152 septets then an escaped pair: the pair goes whole to part two.
        let text = format!("{}{}", "a".repeat(152), "{");
        assert_eq!(
            segments(&text),
            Segments {
                encoding: Encoding::Gsm7,
                units: 154,
                count: 1
            }
        );
        let text = format!("{}{}{}", "a".repeat(152), "{", "a".repeat(153));
        assert_eq!(segments(&text).count, 3);
    }

    #[test]
    fn one_character_outside_gsm_makes_the_whole_text_ucs2() {
        let text = format!("{}é ó", "a".repeat(60));
        assert_eq!(
            segments(&text),
            Segments {
                encoding: Encoding::Ucs2,
                units: 63,
                count: 1
            }
        );
        // An emoji is a surrogate pair: two code units, never split.
        assert_eq!(segments("🙂").units, 2);
        let text = format!("{}🙂", "ж".repeat(68));
        assert_eq!(segments(&text).count, 1);
        // 134 units would fit two parts of 67, but the pair cannot straddle them.
        let text = format!("{}🙂{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(
            segments(&text),
            Segments {
                encoding: Encoding::Ucs2,
                units: 134,
                count: 3
            }
        );
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
        assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
    }

    proptest! {
        #[test]
        fn segment_counts_are_the_least_that_hold_the_text(text in ".{0,400}") {
            let s = segments(&text);
            let (single, part) = s.encoding.capacity();
            prop_assert_eq!(s.encoding == Encoding::Gsm7, is_gsm7(&text));
            if s.units <= single {
                prop_assert_eq!(s.count, 1);
            } else {
                // Enough parts for every unit, and no more than one extra
                // for characters that could not be split at a boundary.
                prop_assert!(s.count * part >= s.units);
                prop_assert!(s.count <= s.units.div_ceil(part) + s.units / part);
            }
        }

        #[test]
        fn the_ascii_shortcut_agrees_with_the_gsm_tables(c in any::<char>()) {
            let expected = if EXTENSION.contains(c) { Some(2) } else { BASIC.contains(c).then_some(1) };
            prop_assert_eq!(septets(c), expected);
        }

        #[test]
        fn gsm_texts_without_extension_characters_follow_the_formula(n in 0usize..1000) {
            let s = segments(&"x".repeat(n));
            let expected = if n <= 160 { 1 } else { n.div_ceil(153) };
            prop_assert_eq!(s.count, expected);
        }

        #[test]
        fn ucs2_texts_of_one_unit_characters_follow_the_formula(n in 1usize..500) {
            let s = segments(&"ж".repeat(n));
            let expected = if n <= 70 { 1 } else { n.div_ceil(67) };
            prop_assert_eq!(s.count, expected);
        }
    }
}
