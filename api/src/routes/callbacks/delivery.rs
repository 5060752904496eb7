//! Recording what a provider reported, in one short transaction: the status
//! lands in `providerConfirmation` (never moving back), and a failure that
//! another provider or channel may get past queues one failover, through the
//! outbox, while the code is still valid.

use crate::error::ApiResult;
use crate::AppState;
use chrono::{DateTime, Utc};
use shared::domain::delivery::{sms_failure_is_transient, DeliveryStatus};
use shared::domain::{Gateway, PhoneSettings, ValidationStatus};
use shared::events::OtpFailover;
use shared::{outbox, ObjectId};
use sqlx::types::Json;
use sqlx::PgConnection;

/// One status report about one message.
#[derive(Debug)]
pub struct Report {
    /// `twilio`, `vonage` or `meta`.
    pub provider: &'static str,
    pub message_id: String,
    pub status: DeliveryStatus,
    /// The provider's error code for a failure.
    pub error_code: Option<String>,
}

/// The validation a report changed.
#[derive(sqlx::FromRow)]
struct Changed {
    id: ObjectId,
    status: ValidationStatus,
    phone_gateway: Gateway,
    expires_at: DateTime<Utc>,
    settings: Option<Json<PhoneSettings>>,
}

/// Records `report`. Unknown message ids, reports about an earlier message
/// of the validation, and reports that do not move its status forward
/// change nothing. A NUL character (which PostgreSQL cannot store) is in no
/// message id we sent, nor in any error code a provider uses.
pub async fn record(app: &AppState, report: &Report) -> ApiResult<()> {
    if report.message_id.contains('\0') || report.error_code.as_ref().is_some_and(|c| c.contains('\0')) {
        return Ok(());
    }
    metrics::counter!(
        "provider_delivery_reports_total",
        "provider" => report.provider,
        "status" => report.status.as_str()
    )
    .increment(1);
    let mut tx = app.pool.begin().await?;
    let changed = update(&mut tx, report).await?;
    let failover = match &changed {
        Some(changed) => request_failover(&mut tx, changed, report).await?,
        None => None,
    };
    tx.commit().await?;
    if let Some(message) = failover {
        app.relay.publish_soon([message]);
    }
    if let Some(changed) = changed {
        tracing::info!(validation_id = %changed.id, provider = report.provider, status = %report.status, "delivery status recorded");
    }
    Ok(())
}

async fn update(tx: &mut PgConnection, report: &Report) -> Result<Option<Changed>, sqlx::Error> {
    let delivered_at = (report.status == DeliveryStatus::Delivered).then(|| shared::time::format(&Utc::now()));
    sqlx::query_as(
        "UPDATE phone_validations AS v
            SET provider_confirmation = v.provider_confirmation
                    || jsonb_build_object('deliveryStatus', $2::text)
                    || CASE WHEN $3::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('deliveredAt', $3::text) END
                    || CASE WHEN $4::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('deliveryErrorCode', $4::text) END,
                updated_at = now()
           FROM provider_messages AS m
          WHERE m.message_id = $1 AND v.id = m.validation_id
            AND v.provider_confirmation->>'messageId' = $1
            AND (CASE coalesce(v.provider_confirmation->>'deliveryStatus', 'queued')
                   WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'undelivered' THEN 2 WHEN 'failed' THEN 2
                   WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 0 END) < $5
      RETURNING v.id, v.status, v.phone_gateway, v.expires_at,
                (SELECT f.phone FROM project_flows AS f WHERE f.id = v.project_flow_id) AS settings",
    )
    .bind(&report.message_id)
    .bind(report.status.as_str())
    .bind(delivered_at)
    .bind(report.error_code.as_deref())
    .bind(i16::from(report.status.rank()))
    .fetch_optional(tx)
    .await
}

/// Which failover, if any, a failure calls for: WhatsApp reported failed
/// with the flow's `smsFallback` → SMS; an SMS undelivered for a cause the
/// next provider may get past → the next provider.
pub fn failover_cause(report: &Report, gateway: Gateway, sms_fallback: bool) -> Option<&'static str> {
    if !report.status.is_failure() {
        return None;
    }
    match (gateway, report.provider) {
        (Gateway::Whatsapp, "meta") if sms_fallback => Some("whatsapp_failed"),
        (Gateway::Sms, provider) if sms_failure_is_transient(provider, report.error_code.as_deref()) => {
            Some("sms_undelivered")
        }
        _ => None,
    }
}

/// Queues the failover a failure calls for, once per validation and cause,
/// and only while the code can still be used.
async fn request_failover(
    tx: &mut PgConnection,
    changed: &Changed,
    report: &Report,
) -> Result<Option<outbox::OutboxMessage>, sqlx::Error> {
    let sms_fallback = changed.settings.as_ref().is_some_and(|s| s.0.sms_fallback);
    let Some(cause) = failover_cause(report, changed.phone_gateway, sms_fallback) else {
        return Ok(None);
    };
    let open = matches!(changed.status, ValidationStatus::New | ValidationStatus::Sent);
    if !open || changed.expires_at <= Utc::now() {
        return Ok(None);
    }
    let inserted = sqlx::query(
        "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, $3)
         ON CONFLICT (validation_id, cause) DO NOTHING",
    )
    .bind(&changed.id)
    .bind(cause)
    .bind(report.provider)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    tracing::info!(validation_id = %changed.id, cause, "failover queued");
    Ok(Some(
        outbox::enqueue(tx, &OtpFailover::new(changed.id.clone(), cause)).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(provider: &'static str, status: DeliveryStatus, code: Option<&str>) -> Report {
        Report {
            provider,
            message_id: "m".into(),
            status,
            error_code: code.map(str::to_owned),
        }
    }

    #[test]
    fn failovers_follow_the_channel_the_cause_and_the_flow() {
        let whatsapp_failed = report("meta", DeliveryStatus::Failed, Some("131026"));
        assert_eq!(
            failover_cause(&whatsapp_failed, Gateway::Whatsapp, true),
            Some("whatsapp_failed")
        );
        assert_eq!(
            failover_cause(&whatsapp_failed, Gateway::Whatsapp, false),
            None,
            "no smsFallback"
        );
        let unreachable = report("twilio", DeliveryStatus::Undelivered, Some("30003"));
        assert_eq!(
            failover_cause(&unreachable, Gateway::Sms, false),
            Some("sms_undelivered")
        );
        let landline = report("twilio", DeliveryStatus::Undelivered, Some("30006"));
        assert_eq!(failover_cause(&landline, Gateway::Sms, true), None, "permanent cause");
        let delivered = report("twilio", DeliveryStatus::Delivered, None);
        assert_eq!(failover_cause(&delivered, Gateway::Sms, true), None);
    }
}
