//! `POST /v2/phone-validations/{id}/next-channel` (docs/contract.md §14): the
//! user asked for the code another way ("call me instead"). The validation's
//! next channel sends the *same* code now: in one transaction the phone's
//! send ledger takes the send (the resend cooldown and the hourly cap
//! apply, as to a create), the step's `send_failovers` row is written and
//! its `otp.failover` goes to the outbox; the dispatcher claims and sends it
//! like any workflow step (`dispatcher/src/pipeline/workflow.rs`). A number
//! the fraud guard blocks, or a flow whose `perDay` is used up today, is
//! refused first, as a create would be.

use super::validate::{decide, refusal, Decision};
use crate::auth::AuthClient;
use crate::create::send_limits;
use crate::envelope::{Envelope, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, RawPathId};
use crate::state::AppState;
use crate::store::{next_channel as store, validations};
use axum::extract::State;
use chrono::Utc;
use shared::domain::fraud::GuardMode;
use shared::domain::phone_validation::PhoneValidation;
use shared::domain::{workflow, PhoneSettings};
use shared::events::OtpFailover;
use shared::outbox;
use shared::store::{fraud, rate_limits};
use shared::ObjectId;
use sqlx::PgConnection;

/// Send the code by the validation's next channel now.
#[utoipa::path(post, path = "/v2/phone-validations/{id}/next-channel", tag = "phone validations",
    operation_id = "nextChannelPhoneValidation",
    params(("id" = String, Path, description = "Phone validation id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<PhoneValidation>, description = "The next channel's send is queued (the same code); the validation as it stands"),
        (status = 403, description = "`max_attempts_exceeded`; `fraud_guard_blocked`: the fraud guard blocks the number's prefix (with `Retry-After`: the block's end)",
            headers(("Retry-After" = u64, description = "Seconds until the block ends"))),
        (status = 404, description = "`phone_validation_not_found`"),
        (status = 409, description = "`no_next_channel`: the workflow has no channel left; `otp_recently_sent` (with `Retry-After`); `phone_validation_already_validated`, `otp_send_failed` or `otp_not_sent`",
            headers(("Retry-After" = u64, description = "Seconds until a code may be sent again"))),
        (status = 412, description = "`phoneValidation_has_expired`"),
        (status = 429, description = "`too_many_requests`: the phone's hourly cap, or the flow's `perDay` used up (with `Retry-After`)",
            headers(("Retry-After" = u64, description = "Seconds until a code may be sent again")))),
    security(("bearer" = [])))]
pub async fn next_channel(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<PhoneValidation>> {
    let id = path_id(&id, "phone_validation")?;
    let validation: PhoneValidation = validations::one(&app.pool, &id, &client)
        .await?
        .ok_or_else(|| ApiError::not_found("phone_validation"))?;
    // A closed validation answers as validate would.
    match decide(&validation, Utc::now()) {
        Decision::Compare => {}
        other => return Err(refusal(&other)),
    }
    let settings = store::flow_settings(&app.pool, &validation.project_flow)
        .await?
        .unwrap_or_default();
    let no_next = || ApiError::conflict("no_next_channel");
    if settings.test_code(&validation.e164()).is_some() {
        return Err(no_next());
    }
    let channels = workflow::channels(Some(&settings), validation.phone_gateway);
    let confirmation = validation.provider_confirmation.as_ref().map(|c| &c.0);
    let field = |name: &str| confirmation.and_then(|c| c.get(name)).and_then(|v| v.as_str());
    let current = workflow::position(&channels, field("channel"));

    let mut tx = app.pool.begin().await?;
    let requested = store::requested_steps(&mut tx, &id).await?;
    let next = (current + 1..channels.len()).find(|index| !requested.contains(&workflow::step_cause(*index)));
    let Some(next) = next else {
        return Err(no_next());
    };
    limits_refusal(&mut tx, &client, &validation, &settings).await?;
    let phone = (validation.country_code.as_str(), validation.phone.as_str());
    let counted = store::count_send(&mut tx, &client, phone, &settings).await?;
    if !counted {
        if let Some(refused) = send_limits::refusal_for(&mut tx, &client, phone, false, &settings).await? {
            return Err(refused);
        }
    }
    let cause = workflow::step_cause(next);
    store::request_step(&mut tx, &id, &cause, field("provider").unwrap_or("")).await?;
    let message = outbox::enqueue(&mut tx, &OtpFailover::new(id.clone(), &cause)).await?;
    tx.commit().await?;
    app.relay.publish_soon([message]);
    metrics::counter!("phone_validation_next_channel_total", "channel" => channels[next].as_str()).increment(1);
    tracing::info!(validation_id = %id, step = next, "next channel requested");
    Ok(Envelope(validation))
}

/// The flow's limits that refuse a later send before it is queued, as they
/// would refuse a create: an active block of the fraud guard
/// (`403:fraud_guard_blocked`) and a `perDay` used up today
/// (`429:too_many_requests`). The dispatcher judges the step again when it
/// sends it, and takes its `perDay` unit then.
async fn limits_refusal(
    conn: &mut PgConnection,
    client: &ObjectId,
    validation: &PhoneValidation,
    settings: &PhoneSettings,
) -> ApiResult<()> {
    if settings.fraud_guard != GuardMode::Off {
        let (code, phone) = (validation.country_code.as_str(), validation.phone.as_str());
        if let Some(until) = fraud::blocking(&mut *conn, client, code, phone).await? {
            return Err(crate::fraud::refused(until));
        }
    }
    if let Some(per_day) = settings.rate_limits.per_day {
        if let Some(wait) = rate_limits::day_full(&mut *conn, &validation.project_flow, per_day).await? {
            return Err(crate::fraud::rate_limits::too_many_requests("per_day", wait));
        }
    }
    Ok(())
}
