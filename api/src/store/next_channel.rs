//! The statements of `POST /v2/phone-validations/{id}/next-channel`: the
//! flow's settings, the workflow steps already requested, the phone's send
//! ledger taking the send, and the step's `send_failovers` row.

use shared::db::Statements;
use shared::domain::PhoneSettings;
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

const FLOW_SETTINGS: &str = "SELECT phone FROM project_flows WHERE id = $1";
const REQUESTED_STEPS: &str = "SELECT cause FROM send_failovers WHERE validation_id = $1";
const COUNT_SEND: &str = "UPDATE phone_send_windows AS w
            SET last_sent_at = now(),
                sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour') || now()
          WHERE w.client_id = $1 AND w.country_code = $2 AND w.phone = $3
            AND w.last_sent_at <= now() - make_interval(secs => $4)
            AND cardinality(array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour')) < $5
      RETURNING true";
const REQUEST_STEP: &str = "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, $3)
         ON CONFLICT (validation_id, cause) DO NOTHING";

/// The phone settings of flow `id` (none if the flow is gone).
pub async fn flow_settings(pool: &PgPool, flow: &ObjectId) -> Result<Option<PhoneSettings>, sqlx::Error> {
    let settings: Option<Json<PhoneSettings>> = sqlx::query_scalar(FLOW_SETTINGS)
        .bind(flow)
        .fetch_optional(pool)
        .await?;
    Ok(settings.map(|Json(s)| s))
}

/// The workflow steps (causes) already requested for validation `id`.
pub async fn requested_steps(conn: &mut PgConnection, id: &ObjectId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(REQUESTED_STEPS).bind(id).fetch_all(conn).await
}

/// The phone's send ledger takes one more send, unless the cooldown or the
/// hourly cap binds (`false`: then `send_limits::refusal_for` says why).
pub async fn count_send(
    conn: &mut PgConnection,
    client: &ObjectId,
    (country_code, phone): (&str, &str),
    settings: &PhoneSettings,
) -> Result<bool, sqlx::Error> {
    let counted: Option<bool> = sqlx::query_scalar(COUNT_SEND)
        .bind(client)
        .bind(country_code)
        .bind(phone)
        .bind(f64::from(settings.resend_cooldown_seconds))
        .bind(i32::try_from(settings.max_sends_per_hour).unwrap_or(i32::MAX))
        .fetch_optional(conn)
        .await?;
    Ok(counted.is_some())
}

/// Writes the step's `send_failovers` row (once).
pub async fn request_step(
    conn: &mut PgConnection,
    id: &ObjectId,
    cause: &str,
    failed_provider: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(REQUEST_STEP)
        .bind(id)
        .bind(cause)
        .bind(failed_provider)
        .execute(conn)
        .await?;
    Ok(())
}

pub fn statements() -> Statements {
    vec![
        ("next_channel.flow_settings".into(), FLOW_SETTINGS.into()),
        ("next_channel.requested_steps".into(), REQUESTED_STEPS.into()),
        ("next_channel.count_send".into(), COUNT_SEND.into()),
        ("next_channel.request_step".into(), REQUEST_STEP.into()),
    ]
}
