//! The closed vocabularies of the contract. Each is stored as text, shown as
//! its contract spelling, and refuses any other spelling.

/// Declares a string-backed enum: serde, sqlx (as `text`), OpenAPI and `FromStr`
/// all use the same spellings, so no other spelling gets in anywhere.
macro_rules! text_enum {
    // `$text` is a `tt`, not a `literal`: utoipa reads `rename` only from a
    // bare literal token, and a `literal` fragment reaches it wrapped.
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(UnknownVariant) }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

/// A spelling that is not one of the enum's.
#[derive(Debug, thiserror::Error)]
#[error("unknown value")]
pub struct UnknownVariant;

text_enum!(
    /// Where a validation is in its life. Moves only forward:
    /// `new → sent → validated | failed`, or `new → failed`
    /// (the statements that move it: `store::phone_validations`).
    ValidationStatus {
        New = "new",
        Sent = "sent",
        Validated = "validated",
        Failed = "failed",
    }
);

text_enum!(
    /// How the code reaches the phone.
    Gateway {
        Sms = "sms",
        Whatsapp = "whatsapp",
        /// A phone call that reads the code (docs/contract.md §14).
        Voice = "voice",
        /// Nothing is sent (the client delivers the code some other way, or a test number).
        None = "none",
    }
);

text_enum!(
    /// What the validation is for.
    ValidationType {
        Validation = "validation",
        Login = "login",
        Onboarding = "onboarding",
        OneTimeLink = "oneTimeLink",
    }
);

text_enum!(
    ValidationMethod {
        VerificationCode = "verificationCode",
        Manual = "manual",
    }
);

text_enum!(
    /// Kind of project flow.
    FlowType {
        Login = "login",
        Onboarding = "onboarding",
    }
);

text_enum!(
    /// Why a validation failed.
    FailedReason {
        Expired = "expired",
        MaxAttemptsExceeded = "max_attempts_exceeded",
        /// The provider refused the message for good (bad number, opted out, ...).
        ProviderRejected = "provider_rejected",
        /// The provider could not be reached, or kept failing, until the code expired.
        ProviderUnavailable = "provider_unavailable",
        /// A newer code was requested for the same phone: this one no longer counts.
        Superseded = "superseded",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_through_serde_and_from_str() {
        for gateway in Gateway::ALL {
            let json = serde_json::to_string(gateway).unwrap();
            assert_eq!(json, format!("\"{gateway}\""));
            assert_eq!(gateway.as_str().parse::<Gateway>().unwrap(), *gateway);
        }
        assert!("SMS".parse::<Gateway>().is_err());
        assert_eq!(ValidationType::OneTimeLink.as_str(), "oneTimeLink");
    }
}
