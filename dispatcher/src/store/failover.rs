//! Failovers and workflow steps: each is a `send_failovers` row claimed with
//! a lease, so a duplicate or redelivered message never sends it twice; its
//! send is recorded as the validation's current message and joins the
//! history, and queues its `phone_validation_sent` event for the client's
//! webhook endpoints in the same statement.

use super::{apply_early_receipts, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::domain::{workflow, WebhookEventType};
use shared::events::routing;
use shared::store::lifecycle;
use shared::ObjectId;
use sqlx::types::Json;
use std::sync::LazyLock;
use std::time::Duration;

const CLAIM_FAILOVER: &str =
    "UPDATE send_failovers SET lease_holder = $3, lease_until = now() + make_interval(secs => $4)
              WHERE validation_id = $1 AND cause = $2 AND sent_at IS NULL
                AND (lease_until IS NULL OR lease_until < now())
          RETURNING failed_provider";
const FAILOVER_LEFT: &str = "SELECT EXTRACT(EPOCH FROM (lease_until - now()))::float8 FROM send_failovers
              WHERE validation_id = $1 AND cause = $2 AND sent_at IS NULL";
const RECORD_FAILOVER: &str =
    "UPDATE send_failovers SET sent_at = now(), provider = $4, message_id = $5, lease_until = NULL
              WHERE validation_id = $1 AND cause = $2 AND lease_holder = $3";
/// The failover's message becomes the validation's current one, counts in
/// the phone's send ledger (and, a workflow's later step, `$10`, in the
/// fraud guard's counters as a create's send does), and (when the client
/// has an endpoint for it) queues its `phone_validation_sent` event, in one
/// statement. `$8`: the event id, `$9`: its `occurredAt`.
static FAILOVER_CONFIRMATION: LazyLock<String> = LazyLock::new(|| {
    let sent = format!("'{}'", WebhookEventType::Sent.as_str());
    format!(
        "WITH v AS (
                UPDATE phone_validations
                   SET status = CASE WHEN status = 'new' THEN 'sent' ELSE status END,
                       provider_confirmation = (coalesce(provider_confirmation, '{{}}'::jsonb)
                           - 'deliveredAt' - 'deliveryErrorCode' - 'errorCode' - 'error')
                           || jsonb_build_object('sent', true, 'status', 'ok', 'provider', $2::text,
                                  'messageId', $3::text, 'sentAt', $4::text, 'deliveryStatus', 'queued',
                                  'failover', $5::text, 'channel', $6::text,
                                  'history', coalesce(provider_confirmation->'history', '[]'::jsonb) || $7::jsonb,
                                  'attempts', coalesce((provider_confirmation->>'attempts')::int, 0) + 1),
                       dispatch_lease_until = NULL, dispatch_lease_holder = NULL,
                       updated_at = now()
                 WHERE id = $1
             RETURNING id, client_id, project_id, project_flow_id, country_code, phone
             ), windows AS (
             UPDATE phone_send_windows AS w
                SET last_sent_at = now(),
                    sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour') || now()
               FROM v
              WHERE w.client_id = v.client_id AND w.country_code = v.country_code AND w.phone = v.phone
             ), guard AS (
             INSERT INTO fraud_counters AS f (client_id, project_flow_id, country_code, prefix, bucket, sent, validated)
             SELECT v.client_id, v.project_flow_id, v.country_code, v.country_code || left(v.phone, 3),
                    date_trunc('second', now()), 1, 0
               FROM v WHERE $10 AND $2::text NOT IN ('', 'test', 'none')
             ON CONFLICT (client_id, bucket, project_flow_id, prefix) DO UPDATE SET sent = f.sent + 1
             ), event AS (
             INSERT INTO outbox (routing_key, message_id, payload)
             SELECT '{routing_key}', $8::text, {payload}
               FROM v WHERE {subscribed}
          RETURNING id, message_id, payload::text AS payload
             )
             SELECT id, message_id, payload FROM event",
        routing_key = routing::SENT,
        payload = lifecycle::payload("$8::text", &sent, "$9::text", "v.id"),
        subscribed = lifecycle::subscribed("v", &sent),
    )
});
const REMEMBER_MESSAGE: &str = "INSERT INTO provider_messages (message_id, validation_id, provider) VALUES ($1, $2, $3)
             ON CONFLICT (message_id) DO NOTHING";
const END_FAILOVER: &str = "UPDATE send_failovers
                SET sent_at = CASE WHEN $4 THEN now() END, lease_until = NULL, lease_holder = NULL
              WHERE validation_id = $1 AND cause = $2 AND sent_at IS NULL AND lease_holder = $3";

/// Who may send a failover now.
pub enum FailoverClaim {
    /// Ours, for the lease; avoid the provider whose message failed.
    Claimed { failed_provider: String },
    /// Sent (or closed) already: a duplicate message.
    Done,
    /// Another instance holds it for this long still.
    Held(Duration),
}

impl Store {
    /// Claims the failover of `id` for `cause` (see `migrations/0011`).
    pub async fn claim_failover(&self, id: &ObjectId, cause: &str) -> Result<FailoverClaim, StoreError> {
        let claimed: Option<String> = sqlx::query_scalar(CLAIM_FAILOVER)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .bind(self.lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(failed_provider) = claimed {
            return Ok(FailoverClaim::Claimed { failed_provider });
        }
        let held: Option<Option<f64>> = sqlx::query_scalar(FAILOVER_LEFT)
            .bind(id)
            .bind(cause)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match held.flatten() {
            Some(left) => FailoverClaim::Held(Duration::from_secs_f64(left.max(0.0))),
            None => FailoverClaim::Done,
        })
    }

    /// Records the failover's message: it becomes the validation's current
    /// one (`providerConfirmation`), found by the provider's next callback.
    pub async fn record_failover(
        &self,
        id: &ObjectId,
        cause: &str,
        channel: &str,
        provider: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let sent_at = Utc::now();
        let entry = history_entry(channel, provider, Some(message_id), &sent_at, "queued");
        let mut tx = self.pool.begin().await?;
        sqlx::query(RECORD_FAILOVER)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .bind(provider)
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        // The new message becomes the current one, joins the history, and
        // counts in the phone's send ledger (every channel's sends count
        // towards the cooldown and the hourly cap of later creates) and, a
        // workflow's step, in the fraud guard's counters.
        let event: Option<(i64, String, String)> = sqlx::query_as(&FAILOVER_CONFIRMATION)
            .bind(id)
            .bind(provider)
            .bind(message_id)
            .bind(shared::time::format(&sent_at))
            .bind(cause)
            .bind(channel)
            .bind(Json(json!([entry])))
            .bind(ObjectId::new())
            .bind(lifecycle::occurred_now())
            .bind(workflow::step_of(cause).is_some())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(REMEMBER_MESSAGE)
            .bind(message_id)
            .bind(id)
            .bind(provider)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.relay.publish_soon(event.map(|(outbox_id, event_id, payload)| {
            lifecycle::message(outbox_id, routing::SENT.to_owned(), event_id, payload)
        }));
        apply_early_receipts(&self.pool, &self.relay, &[(provider, message_id)]).await;
        Ok(())
    }

    /// Ends a failover without a message (no other provider, a refusal, or
    /// the validation moved on), or gives it back (`close = false`) for a retry.
    pub async fn end_failover(&self, id: &ObjectId, cause: &str, close: bool) -> Result<(), StoreError> {
        sqlx::query(END_FAILOVER)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .bind(close)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One entry of `providerConfirmation.history`.
pub(super) fn history_entry(
    channel: &str,
    provider: &str,
    message_id: Option<&str>,
    sent_at: &DateTime<Utc>,
    status: &str,
) -> serde_json::Value {
    json!({
        "channel": channel,
        "provider": provider,
        "messageId": message_id,
        "sentAt": shared::time::format(sent_at),
        "deliveryStatus": status,
    })
}

/// The statements of this file, for the schema check.
pub(super) fn statements() -> shared::db::Statements {
    [
        ("dispatcher.claim_failover", CLAIM_FAILOVER),
        ("dispatcher.failover_left", FAILOVER_LEFT),
        ("dispatcher.record_failover", RECORD_FAILOVER),
        ("dispatcher.failover_confirmation", FAILOVER_CONFIRMATION.as_str()),
        ("dispatcher.remember_message", REMEMBER_MESSAGE),
        ("dispatcher.end_failover", END_FAILOVER),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
