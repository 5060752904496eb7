//! A create request: its body as sent (`CreatePhoneValidation`, documented
//! in the OpenAPI document) and as checked (`NewValidation`), which the
//! create machinery works with.

use crate::error::{ApiError, ApiResult};
use crate::extract::{check_len, parse_phone, path_id, StringOrNumber};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use shared::domain::{Gateway, Language, PhoneNumber, PhoneSettings, ValidationMethod, ValidationType};
use shared::ObjectId;
use utoipa::ToSchema;

/// Body of a create request (seed `create-phone-validation.txt`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePhoneValidation {
    /// The project's `_id`.
    #[schema(value_type = String, pattern = "^[0-9a-f]{24}$")]
    pub project: Option<String>,
    /// The project flow's `_id`.
    #[schema(value_type = String, pattern = "^[0-9a-f]{24}$")]
    pub project_flow: Option<String>,
    /// `+` and 1-4 digits, e.g. `+507`.
    #[schema(value_type = String, pattern = r"^\+[0-9]{1,4}$", example = "+507")]
    pub country_code: Option<String>,
    /// National number; spaces, dashes, dots and parentheses are ignored.
    /// It must be a number of that country that can receive an SMS (or,
    /// when the code goes by voice calls alone, a call: fixed lines too).
    #[schema(value_type = StringOrNumber, example = "62617737")]
    pub phone: Option<StringOrNumber>,
    #[schema(value_type = ValidationMethod)]
    pub validation_method: Option<ValidationMethod>,
    #[serde(rename = "type")]
    #[schema(value_type = ValidationType)]
    pub kind: Option<ValidationType>,
    /// Defaults to the flow's gateway.
    pub phone_gateway: Option<Gateway>,
    /// Defaults to now + the flow's `otpExpiresInSeconds`; at most 24 h ahead.
    pub expires_at: Option<DateTime<Utc>>,
    pub redirect_url: Option<String>,
    pub webhook_url: Option<String>,
    pub identity_url: Option<String>,
    #[serde(rename = "requires2FA")]
    pub requires_2fa: Option<bool>,
    /// The end user's IP address (IPv4 or IPv6).
    pub ip_address: Option<String>,
    /// Up to 200 characters.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    pub language: Option<Language>,
    #[schema(value_type = Option<Object>)]
    pub extra_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Bypass the resend cooldown (not the hourly cap).
    pub force: Option<bool>,
}

/// A create request, checked.
pub struct NewValidation {
    pub project: ObjectId,
    pub flow: ObjectId,
    pub phone: PhoneNumber,
    pub method: ValidationMethod,
    pub kind: ValidationType,
    pub body: CreatePhoneValidation,
}

impl CreatePhoneValidation {
    pub fn check(mut self) -> ApiResult<NewValidation> {
        let mut missing = Vec::new();
        for (absent, name) in [
            (self.project.is_none(), "project"),
            (self.project_flow.is_none(), "projectFlow"),
            (self.country_code.is_none(), "countryCode"),
            (self.phone.is_none(), "phone"),
            (self.validation_method.is_none(), "validationMethod"),
            (self.kind.is_none(), "type"),
        ] {
            if absent {
                missing.push(name);
            }
        }
        let (Some(project), Some(flow), Some(country), Some(phone), Some(method), Some(kind)) = (
            self.project.take(),
            self.project_flow.take(),
            self.country_code.take(),
            self.phone.take(),
            self.validation_method,
            self.kind,
        ) else {
            return Err(ApiError::Missing(missing));
        };
        let phone = parse_phone(&country, &phone.into_string())?;
        check_len(&self.name, "name", 200)?;
        for (value, field) in [
            (&self.redirect_url, "redirectUrl"),
            (&self.webhook_url, "webhookUrl"),
            (&self.identity_url, "identityUrl"),
        ] {
            if let Some(url) = value {
                shared::domain::check_url(url, field).map_err(|e| ApiError::invalid(e.0))?;
            }
        }
        if let Some(ip) = &self.ip_address {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::invalid("ipAddress"))?;
        }
        if let Some(expires_at) = self.expires_at {
            let now = Utc::now();
            if expires_at <= now || expires_at > now + Duration::days(1) {
                return Err(ApiError::invalid("expiresAt"));
            }
        }
        Ok(NewValidation {
            project: path_id(&project, "project")?,
            flow: path_id(&flow, "projectFlow")?,
            phone,
            method,
            kind,
            body: self,
        })
    }
}

impl NewValidation {
    /// What only the flow can say: a number that cannot receive an SMS, or
    /// of a country the flow does not allow, is refused unless it is one of
    /// the flow's test numbers, and a code may not live longer than the flow allows.
    pub fn check_against(&self, settings: &PhoneSettings) -> ApiResult<()> {
        let test_number = settings.test_code(self.phone.e164()).is_some();
        // A code that goes by voice calls alone reaches fixed lines too.
        let gateway = self.body.phone_gateway.unwrap_or(settings.phone_gateway);
        let channels = shared::domain::workflow::channels(Some(settings), gateway);
        let voice_only = !channels.is_empty() && channels.iter().all(|c| *c == Gateway::Voice);
        let reachable = if voice_only {
            self.phone.can_receive_call()
        } else {
            self.phone.can_receive_sms()
        };
        if !reachable && !test_number {
            return Err(ApiError::invalid("phone"));
        }
        // Geo permissions: by the number's region, not its calling code alone (`+1` is many countries).
        let allowed = &settings.allowed_countries;
        if !allowed.is_empty() && !test_number && !self.phone.region().is_some_and(|r| allowed.iter().any(|a| a == r)) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "country_not_allowed"));
        }
        if let Some(expires_at) = self.body.expires_at {
            let longest = Utc::now() + Duration::seconds(i64::from(settings.otp_expires_in_seconds));
            if expires_at > longest {
                return Err(ApiError::invalid("expiresAt"));
            }
        }
        Ok(())
    }
}
