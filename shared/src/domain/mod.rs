//! Domain types: each is parsed once at the edge and trusted afterwards.

pub mod delivery;
mod enums;
pub mod fraud;
mod phone;
pub mod phone_validation;
pub mod receipts;
mod settings;
pub mod workflow;

pub use enums::{FailedReason, FlowType, Gateway, Language, ValidationMethod, ValidationStatus, ValidationType};
pub use phone::{CountryCode, InvalidPhone, PhoneNumber};
pub use phone_validation::PhoneValidation;
pub use settings::{check_url, IpLimits, PhoneSettings, PhoneSettingsPatch, RateLimits, SettingsError};
