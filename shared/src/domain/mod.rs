//! Domain types: each is parsed once at the edge and trusted afterwards.

mod enums;
mod phone;
mod settings;

pub use enums::{FailedReason, FlowType, Gateway, Language, ValidationMethod, ValidationStatus, ValidationType};
pub use phone::{CountryCode, InvalidPhone, PhoneNumber};
pub use settings::{check_url, PhoneSettings, PhoneSettingsPatch, SettingsError};
