//! Domain types: each is parsed once at the edge and trusted afterwards.

pub mod delivery;
mod enums;
pub mod fraud;
mod phone;
pub mod phone_validation;
mod settings;
pub mod webhooks;
pub mod workflow;

/// The language of the texts a user receives: one of the built-in locales
/// (`shared::locale`), under the name the contract gives the field.
pub use crate::locale::Locale as Language;
pub use enums::{FailedReason, FlowType, Gateway, ValidationMethod, ValidationStatus, ValidationType};
pub use phone::{digits_of, CountryCode, InvalidPhone, PhoneNumber, SEPARATORS};
pub use phone_validation::PhoneValidation;
pub use settings::{check_url, IpLimits, PhoneSettings, PhoneSettingsPatch, RateLimits, SettingsError};
pub use webhooks::WebhookEventType;
