//! `POST /v2/phone-validations/validate`: checks a code against the newest
//! validation of the client for that phone. Attempts are counted atomically
//! *before* the (slow) bcrypt check, so N concurrent guesses consume N attempts
//! and no lock is held while hashing.

use crate::auth::AuthClient;
use crate::envelope::{Envelope, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_phone, path_id, ApiJson, StringOrNumber};
use crate::state::AppState;
use crate::store::validations;
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::{FailedReason, Gateway, PhoneValidation, ValidationStatus, ValidationType};
use shared::otp::OtpCode;
use shared::store::phone_validations::{self, CountedAttempt};
use shared::ObjectId;
use utoipa::ToSchema;

/// Body of a validate request (seed `validate-phone-validation.txt`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidatePhoneValidation {
    /// National number, as at creation.
    #[schema(value_type = StringOrNumber)]
    pub phone: Option<StringOrNumber>,
    /// `+` and 1-4 digits, e.g. `+507`.
    #[schema(value_type = String, pattern = r"^\+[0-9]{1,4}$")]
    pub country_code: Option<String>,
    /// The code: a string keeps leading zeros (`"012345"`).
    #[schema(value_type = StringOrNumber)]
    pub otp: Option<StringOrNumber>,
    /// Only a validation of this project.
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub project: Option<String>,
    /// Only a validation of this project flow.
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub project_flow: Option<String>,
    pub phone_gateway: Option<Gateway>,
}

/// The answer to a right code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validated {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub status: ValidationStatus,
    pub country_code: String,
    pub phone: String,
    #[serde(rename = "type")]
    pub kind: ValidationType,
    pub show_face_liveness_recommendation: bool,
    /// For `type: login`: the end user's JWT (EdDSA, `sub` = validation id,
    /// `aud` = the client's id, 1 h), verifiable with `/.well-known/jwks.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What a validation in its current state says to a code, before any code is compared.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    AlreadyValidated,
    /// Past `expiresAt`; `fail` when it still has to be marked failed.
    Expired {
        fail: bool,
    },
    MaxAttemptsExceeded,
    SendFailed,
    NotSent,
    /// A code may be compared.
    Compare,
}

/// The status machine's answer to a validate call (pure; no I/O). Once a
/// hash is stored the code is compared, whether the status is `new` or
/// `sent`: the message may reach the phone before the dispatcher records it.
pub fn decide(v: &PhoneValidation, now: DateTime<Utc>) -> Decision {
    match v.status {
        ValidationStatus::Validated => Decision::AlreadyValidated,
        ValidationStatus::Failed => match v.failed_reason {
            // A superseded code is as dead as an expired one.
            Some(FailedReason::Expired | FailedReason::Superseded) => Decision::Expired { fail: false },
            Some(FailedReason::MaxAttemptsExceeded) => Decision::MaxAttemptsExceeded,
            _ => Decision::SendFailed,
        },
        _ if v.is_expired(now) => Decision::Expired { fail: true },
        _ if v.attempts >= v.max_attempts => Decision::MaxAttemptsExceeded,
        _ if v.otp.is_none() => Decision::NotSent,
        ValidationStatus::New | ValidationStatus::Sent => Decision::Compare,
    }
}

/// The answer a validate call gets for `decision` (other than `Compare`).
pub(super) fn refusal(decision: &Decision) -> ApiError {
    match decision {
        Decision::AlreadyValidated => ApiError::conflict("phone_validation_already_validated"),
        Decision::Expired { .. } => ApiError::new(StatusCode::PRECONDITION_FAILED, "phoneValidation_has_expired"),
        Decision::MaxAttemptsExceeded => ApiError::new(StatusCode::FORBIDDEN, "max_attempts_exceeded"),
        Decision::SendFailed => ApiError::conflict("otp_send_failed"),
        Decision::NotSent | Decision::Compare => ApiError::conflict("otp_not_sent"),
    }
}

/// Validate a code.
#[utoipa::path(post, path = "/v2/phone-validations/validate", tag = "phone validations",
    operation_id = "validatePhoneValidation", request_body = ValidatePhoneValidation,
    responses(
        (status = 200, body = Success<Validated>, description = "The right code: the validation is `validated`"),
        (status = 400, description = "`invalid_json`, `invalid_<field>`, or `invalid_otp` (not the validation's number of digits)"),
        (status = 403, description = "`otp_does_not_match` or `max_attempts_exceeded`"),
        (status = 404, description = "`phone_validation_not_found`"),
        (status = 409, description = "`phone_validation_already_validated`, `otp_send_failed`, `otp_not_sent`, or `MissingParameter`"),
        (status = 412, description = "`phoneValidation_has_expired`")),
    security(("bearer" = [])))]
pub async fn validate(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    ApiJson(body): ApiJson<ValidatePhoneValidation>,
) -> ApiResult<Envelope<Validated>> {
    let mut missing = Vec::new();
    for (absent, name) in [
        (body.phone.is_none(), "phone"),
        (body.country_code.is_none(), "countryCode"),
        (body.otp.is_none(), "otp"),
    ] {
        if absent {
            missing.push(name);
        }
    }
    let (Some(phone), Some(country), Some(otp)) = (body.phone, body.country_code, body.otp) else {
        return Err(ApiError::Missing(missing));
    };
    let phone = parse_phone(&country, &phone.into_string())?;
    let code = OtpCode::parse(&otp.into_string()).map_err(|_| ApiError::invalid("otp"))?;
    let project = body
        .project
        .as_deref()
        .map(|p| path_id(p, "phone_validation"))
        .transpose()?;
    let flow = body
        .project_flow
        .as_deref()
        .map(|f| path_id(f, "phone_validation"))
        .transpose()?;

    let current = validations::newest(&app.pool, &client, &phone, &project, &flow, body.phone_gateway).await?;
    let current = current.ok_or_else(|| ApiError::not_found("phone_validation"))?;
    if code.expose().len() != usize::try_from(current.otp_length).unwrap_or(0) {
        return Err(ApiError::invalid("otp"));
    }
    check(&app, current, &code, phone.e164()).await
}

/// Answers a code for `current`: refuses by its state, or counts the
/// attempt and compares the code.
async fn check(app: &AppState, current: PhoneValidation, code: &OtpCode, e164: &str) -> ApiResult<Envelope<Validated>> {
    match decide(&current, Utc::now()) {
        Decision::Compare => {}
        Decision::Expired { fail: true } => {
            fail(app, &current.id, FailedReason::Expired).await?;
            return Err(refusal(&Decision::Expired { fail: true }));
        }
        other => return Err(refusal(&other)),
    }
    let counted = phone_validations::count_attempt(&app.pool, &current.id).await?;
    let Some(CountedAttempt {
        attempts,
        max_attempts,
        otp_hash: Some(stored),
    }) = counted
    else {
        // Someone else moved it on (or it just expired): answer from its new state.
        return Err(reread_refusal(app, &current.id).await?);
    };
    if verify(app, &current.id, code, stored).await? {
        return right_code(app, &current.id, &current.client, e164).await;
    }
    metrics::counter!("phone_validations_wrong_code_total").increment(1);
    if attempts >= max_attempts {
        fail(app, &current.id, FailedReason::MaxAttemptsExceeded).await?;
        tracing::info!(validation_id = %current.id, "phone validation failed: max attempts");
        return Err(refusal(&Decision::MaxAttemptsExceeded));
    }
    Err(ApiError::new(StatusCode::FORBIDDEN, "otp_does_not_match"))
}

/// The code matched: `validated`, its event queued, and for a login the end
/// user's token.
async fn right_code(app: &AppState, id: &ObjectId, client: &ObjectId, e164: &str) -> ApiResult<Envelope<Validated>> {
    let mut tx = app.pool.begin().await?;
    let Some((validated, message)) = phone_validations::validate(&mut tx, id).await? else {
        drop(tx);
        return Err(reread_refusal(app, id).await?);
    };
    tx.commit().await?;
    app.relay.publish_soon([message]);
    metrics::counter!("phone_validations_validated_total").increment(1);
    tracing::info!(validation_id = %validated.id, "phone validated");
    let token = match validated.kind {
        ValidationType::Login => Some(
            app.login_tokens
                .sign(&validated.id, client, e164)
                .context("while signing the login token")?,
        ),
        _ => None,
    };
    Ok(Envelope(Validated {
        id: validated.id,
        status: validated.status,
        country_code: validated.country_code,
        phone: validated.phone,
        kind: validated.kind,
        show_face_liveness_recommendation: false,
        token,
    }))
}

/// bcrypt on the blocking pool, at most one per core at a time.
async fn verify(app: &AppState, id: &ObjectId, code: &OtpCode, stored: String) -> ApiResult<bool> {
    let _slot = app.bcrypt_slots.acquire().await.context("bcrypt semaphore closed")?;
    let hasher = app.hasher.clone();
    let (id, code) = (id.to_string(), code.clone());
    let matched = tokio::task::spawn_blocking(move || hasher.verify(&id, &code, &stored))
        .await
        .context("bcrypt task failed")?;
    Ok(matched)
}

async fn fail(app: &AppState, id: &ObjectId, reason: FailedReason) -> ApiResult<()> {
    let mut tx = app.pool.begin().await?;
    if let Some((_, message)) = phone_validations::fail(&mut tx, id, reason, None).await? {
        tx.commit().await?;
        app.relay.publish_soon([message]);
    }
    Ok(())
}

async fn reread_refusal(app: &AppState, id: &ObjectId) -> ApiResult<ApiError> {
    let now = Utc::now();
    let current = phone_validations::fetch(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("phone_validation"))?;
    let decision = decide(&current, now);
    if let Decision::Expired { fail: true } = decision {
        fail(app, id, FailedReason::Expired).await?;
    }
    if decision == Decision::Compare {
        // It was counted out by a concurrent wrong guess that is still being checked.
        return Ok(refusal(&Decision::MaxAttemptsExceeded));
    }
    Ok(refusal(&decision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::{Gateway, Language, ValidationMethod};
    use sqlx::types::Json;

    fn validation(status: ValidationStatus) -> PhoneValidation {
        let now = Utc::now();
        PhoneValidation {
            id: ObjectId::new(),
            client: ObjectId::new(),
            project: ObjectId::new(),
            project_flow: ObjectId::new(),
            status,
            country_code: "+507".into(),
            phone: "62617737".into(),
            phone_gateway: Gateway::Sms,
            validation_method: ValidationMethod::VerificationCode,
            kind: ValidationType::Login,
            otp: Some("$2b$04$hash".into()),
            otp_length: 6,
            expires_at: now + chrono::Duration::minutes(10),
            name: None,
            phone_data: Json(serde_json::json!({})),
            extra_params: None,
            redirect_url: None,
            webhook_url: None,
            identity_url: None,
            requires_2fa: false,
            ip_address: None,
            language: Language::En,
            attempts: 0,
            max_attempts: 3,
            provider_confirmation: None,
            validated_at: None,
            failed_reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_sent_unexpired_validation_compares_the_code() {
        assert_eq!(
            decide(&validation(ValidationStatus::Sent), Utc::now()),
            Decision::Compare
        );
    }

    #[test]
    fn expiry_wins_over_everything_but_a_final_status() {
        let mut v = validation(ValidationStatus::Sent);
        let later = v.expires_at + chrono::Duration::seconds(1);
        assert_eq!(decide(&v, later), Decision::Expired { fail: true });
        v.status = ValidationStatus::Validated;
        assert_eq!(decide(&v, later), Decision::AlreadyValidated);
    }

    #[test]
    fn failed_validations_answer_by_their_reason() {
        let mut v = validation(ValidationStatus::Failed);
        for (reason, decision) in [
            (FailedReason::MaxAttemptsExceeded, Decision::MaxAttemptsExceeded),
            (FailedReason::Expired, Decision::Expired { fail: false }),
            (FailedReason::ProviderRejected, Decision::SendFailed),
            (FailedReason::ProviderUnavailable, Decision::SendFailed),
        ] {
            v.failed_reason = Some(reason);
            assert_eq!(decide(&v, Utc::now()), decision);
        }
    }

    #[test]
    fn nothing_to_compare_before_a_hash_is_stored_and_a_stored_hash_is_compared_at_once() {
        let mut v = validation(ValidationStatus::New);
        v.otp = None;
        assert_eq!(decide(&v, Utc::now()), Decision::NotSent);
        v.otp = Some("$2b$04$hash".into());
        assert_eq!(
            decide(&v, Utc::now()),
            Decision::Compare,
            "the SMS may arrive before `sent` is recorded"
        );
        let mut v = validation(ValidationStatus::Sent);
        v.attempts = 3;
        assert_eq!(decide(&v, Utc::now()), Decision::MaxAttemptsExceeded);
    }
}
