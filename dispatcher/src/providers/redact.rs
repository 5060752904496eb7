//! Providers' error texts as they may be logged. Some quote the number they
//! refused (Twilio's 21211 and 21614: "The 'To' number +507… is not a valid
//! phone number"), and no phone number belongs in a log.

use super::SendError;
use std::borrow::Cow;
use std::fmt;

/// Fewer digits than this in a run are left alone: provider error codes
/// (Twilio's are 5 digits), HTTP statuses, counts.
const MIN_DIGITS: usize = 6;

/// What may separate the digit groups of a written number (`+1 (415)
/// 555-0100`, `507.6261.7737`): counted as part of one run.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')' | '/')
}

/// `text` with every run of at least 6 digits (separators between digit
/// groups included) replaced by `***`.
pub fn mask_numbers(text: &str) -> Cow<'_, str> {
    if text.bytes().filter(u8::is_ascii_digit).count() < MIN_DIGITS {
        return Cow::Borrowed(text);
    }
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        masked.push_str(&rest[..start]);
        let run = &rest[start..];
        let (mut end, mut digits) = (0, 0);
        for (at, c) in run.char_indices() {
            if c.is_ascii_digit() {
                digits += 1;
                end = at + 1;
            } else if !is_separator(c) {
                break;
            }
        }
        masked.push_str(if digits >= MIN_DIGITS { "***" } else { &run[..end] });
        rest = &run[end..];
    }
    masked.push_str(rest);
    Cow::Owned(masked)
}

/// A [`SendError`] for logs: the provider's code as it is (a code is no
/// number of anyone's), its message with digit runs masked.
pub struct Redacted<'a>(pub &'a SendError);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.0 {
            SendError::Transient { .. } => "transient provider failure",
            SendError::Permanent { .. } => "provider rejected the message",
        };
        write!(f, "{what} {:?}: {}", self.0.code(), mask_numbers(self.0.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_six_digits_or_more_are_masked_and_shorter_ones_kept() {
        assert_eq!(
            mask_numbers("The 'To' number +50762617737 is not a valid phone number."),
            "The 'To' number +*** is not a valid phone number."
        );
        assert_eq!(
            mask_numbers("unreachable: +1 (415) 555-0100, code 21211"),
            "unreachable: +***, code 21211"
        );
        assert_eq!(
            mask_numbers("Error 21614 after 3 tries (HTTP 400)"),
            "Error 21614 after 3 tries (HTTP 400)"
        );
        assert_eq!(mask_numbers("123456"), "***");
        assert_eq!(mask_numbers("12345 ok"), "12345 ok");
        assert_eq!(mask_numbers("número 6261.7737 é inválido"), "número *** é inválido");
    }

    #[test]
    fn a_redacted_error_keeps_its_code_and_masks_its_message() {
        let error = SendError::Permanent {
            code: Some("21211".into()),
            message: "The 'To' number +50762617737 is not a valid phone number.".into(),
            not_on_whatsapp: false,
        };
        let logged = Redacted(&error).to_string();
        assert_eq!(
            logged,
            "provider rejected the message Some(\"21211\"): The 'To' number +*** is not a valid phone number."
        );
    }
}
