//! The per-phone send limits of a create: the resend cooldown and the
//! hourly cap (docs/contract.md §4.2). The create statement enforces them under the
//! phone's ledger row lock (`insert.rs`); when it refuses, this says why.

use super::request::NewValidation;
use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use shared::domain::PhoneSettings;
use shared::ObjectId;
use sqlx::PgConnection;

const SEND_WINDOW: &str =
    "SELECT last_sent_at, array(SELECT t FROM unnest(sent_at) AS t WHERE t > now() - interval '1 hour') AS recent,
                now() AS now
           FROM phone_send_windows WHERE client_id = $1 AND country_code = $2 AND phone = $3";

/// Why the send ledger refused a create: the hourly cap first (it binds even
/// when forced), then the cooldown. `None` when neither binds any more (the
/// window moved on between the two statements): the caller tries again.
pub async fn refusal(
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    settings: &PhoneSettings,
) -> ApiResult<Option<ApiError>> {
    let phone = (new.phone.country().to_string(), new.phone.national());
    let force = new.body.force.unwrap_or(false);
    refusal_for(conn, client, (&phone.0, phone.1), force, settings).await
}

/// As [`refusal`], for a phone given as (country code, national number).
pub async fn refusal_for(
    conn: &mut PgConnection,
    client: &ObjectId,
    (country_code, national): (&str, &str),
    force: bool,
    settings: &PhoneSettings,
) -> ApiResult<Option<ApiError>> {
    #[derive(sqlx::FromRow)]
    struct Window {
        last_sent_at: DateTime<Utc>,
        /// Sends within the last hour.
        recent: Vec<DateTime<Utc>>,
        now: DateTime<Utc>,
    }
    let window: Option<Window> = sqlx::query_as(SEND_WINDOW)
        .bind(client)
        .bind(country_code)
        .bind(national)
        .fetch_optional(conn)
        .await?;
    let Some(Window {
        last_sent_at: last,
        recent,
        now,
    }) = window
    else {
        return Ok(None);
    };
    if recent.len() >= usize::try_from(settings.max_sends_per_hour).unwrap_or(usize::MAX) {
        let free_at = recent.iter().min().copied().unwrap_or(now) + Duration::hours(1);
        return Ok(Some(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
                .with_retry_after(seconds_until(now, free_at)),
        ));
    }
    let allowed_at = last + Duration::seconds(i64::from(settings.resend_cooldown_seconds));
    if !force && allowed_at > now {
        return Ok(Some(
            ApiError::conflict("otp_recently_sent").with_retry_after(seconds_until(now, allowed_at)),
        ));
    }
    Ok(None)
}

fn seconds_until(now: DateTime<Utc>, then: DateTime<Utc>) -> u64 {
    let millis = (then - now).num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1000).unwrap_or(1)
}

/// The send ledger's read, for the schema check.
pub fn statements() -> shared::db::Statements {
    [("send_limits.window", SEND_WINDOW)]
        .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
        .into()
}
