//! A workflow's steps in the database (docs/contract.md §14): a timer's
//! step gets its `send_failovers` row when it comes due, and a channel that
//! refused the code for good moves the workflow on in one transaction.

use super::{Store, StoreError};
use chrono::Utc;
use serde_json::json;
use shared::events::OtpFailover;
use shared::outbox;
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::PgConnection;

const ENSURE_STEP: &str = "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, '')
             ON CONFLICT (validation_id, cause) DO NOTHING";
const REFUSE_FIRST_SEND: &str = "UPDATE phone_validations
                    SET status = 'sent',
                        provider_confirmation = coalesce(provider_confirmation, jsonb_build_object(
                                'sent', false, 'status', 'error', 'provider', $3::text, 'channel', $4::text,
                                'errorCode', $5::text, 'error', $6::text, 'attempts', 1))
                            || jsonb_build_object('history',
                                   coalesce(provider_confirmation->'history', '[]'::jsonb) || $7::jsonb),
                        dispatch_lease_until = NULL, dispatch_lease_holder = NULL, updated_at = now()
                  WHERE id = $1 AND status = 'new' AND dispatch_lease_holder = $2";
const CLOSE_STEP: &str = "UPDATE send_failovers SET sent_at = now(), lease_until = NULL
                      WHERE validation_id = $1 AND cause = $2 AND lease_holder = $3 AND sent_at IS NULL";
const REFUSAL_HISTORY: &str = "UPDATE phone_validations
                            SET provider_confirmation = provider_confirmation || jsonb_build_object('history',
                                    coalesce(provider_confirmation->'history', '[]'::jsonb) || $2::jsonb),
                                updated_at = now()
                          WHERE id = $1";
const REQUEST_STEP: &str = "INSERT INTO send_failovers (validation_id, cause, failed_provider) VALUES ($1, $2, $3)
             ON CONFLICT (validation_id, cause) DO NOTHING";

/// A send the provider (or the send limits) refused for good, as a
/// `providerConfirmation.history` entry.
pub struct Refused<'a> {
    pub channel: &'a str,
    pub provider: &'a str,
    pub code: Option<&'a str>,
    pub message: &'a str,
}

impl Refused<'_> {
    /// Its `providerConfirmation.history` entry: failed, no message id.
    fn entry(&self) -> serde_json::Value {
        json!({
            "channel": self.channel,
            "provider": self.provider,
            "sentAt": shared::time::format(&Utc::now()),
            "deliveryStatus": "failed",
            "errorCode": self.code,
            "error": self.message,
        })
    }
}

impl Store {
    /// Makes sure step `cause` of a workflow has its row (a timer's step
    /// gets it when it comes due), so it can be claimed like any failover.
    pub async fn ensure_step(&self, id: &ObjectId, cause: &str) -> Result<(), StoreError> {
        sqlx::query(ENSURE_STEP)
            .bind(id)
            .bind(cause)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A channel refused the code for good: in one transaction, the refusal
    /// joins `providerConfirmation.history`, the send we hold is settled
    /// (the first send, whose validation becomes `sent` so it is never sent
    /// again; or the step `cause`), and the `next` step is requested through
    /// the outbox, so no crash can lose it. Nothing when the send is no
    /// longer ours.
    pub async fn move_on(
        &self,
        id: &ObjectId,
        cause: Option<&str>,
        refused: &Refused<'_>,
        next: &str,
    ) -> Result<(), StoreError> {
        let entry = refused.entry();
        let mut tx = self.pool.begin().await?;
        let settled = match cause {
            None => sqlx::query(REFUSE_FIRST_SEND)
                .bind(id)
                .bind(&self.holder)
                .bind(refused.provider)
                .bind(refused.channel)
                .bind(refused.code)
                .bind(refused.message)
                .bind(Json(json!([entry])))
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            Some(cause) => self.settle_step(&mut tx, id, cause, entry).await?,
        };
        if settled == 0 {
            return Ok(());
        }
        let inserted = sqlx::query(REQUEST_STEP)
            .bind(id)
            .bind(next)
            .bind(refused.provider)
            .execute(&mut *tx)
            .await?;
        let message = if inserted.rows_affected() == 1 {
            Some(outbox::enqueue(&mut tx, &OtpFailover::new(id.clone(), next)).await?)
        } else {
            None
        };
        tx.commit().await?;
        self.relay.publish_soon(message);
        Ok(())
    }
}

impl Store {
    /// Closes the step `cause` we hold without a send, its refusal joining
    /// `providerConfirmation.history` (`1`), unless it is no longer ours (`0`).
    async fn settle_step(
        &self,
        conn: &mut PgConnection,
        id: &ObjectId,
        cause: &str,
        entry: serde_json::Value,
    ) -> Result<u64, StoreError> {
        let closed = sqlx::query(CLOSE_STEP)
            .bind(id)
            .bind(cause)
            .bind(&self.holder)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if closed == 1 {
            sqlx::query(REFUSAL_HISTORY)
                .bind(id)
                .bind(Json(json!([entry])))
                .execute(&mut *conn)
                .await?;
        }
        Ok(closed)
    }

    /// The send limits refused the step `cause` (`limits.rs`): it is closed
    /// unsent, the refusal joins the history, and no later step follows;
    /// the validation stays open for the code already sent.
    pub async fn refuse_step(&self, id: &ObjectId, cause: &str, refused: &Refused<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.settle_step(&mut tx, id, cause, refused.entry()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The statements of this file, for the schema check.
pub(super) fn statements() -> shared::db::Statements {
    [
        ("dispatcher.ensure_step", ENSURE_STEP),
        ("dispatcher.refuse_first_send", REFUSE_FIRST_SEND),
        ("dispatcher.close_step", CLOSE_STEP),
        ("dispatcher.refusal_history", REFUSAL_HISTORY),
        ("dispatcher.request_step", REQUEST_STEP),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
