//! One `otp.requested` message: decode → load → decide → hash and claim →
//! send (with quick retries) → record → ack. Longer waits go through a delay
//! queue; the message is acked only once its outcome is durable (recorded in
//! PostgreSQL, or re-published to a delay tier with a confirm).

use crate::message::sms_text;
use crate::plan::{self, AfterFailure, Plan};
use crate::providers::{Outbound, Provider, SendError, Sms, Whatsapp};
use crate::store::{self, ProviderFailure, Target};
use backon::BackoffBuilder;
use chrono::Utc;
use lapin::types::{AMQPValue, FieldTable};
use shared::amqp::{BasicProperties, Broker, Delivery, Handled, Topology};
use shared::domain::{FailedReason, Gateway};
use shared::events::OtpRequested;
use shared::otp::OtpCode;
use shared::outbox::Relay;
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Header carrying the provider attempts made in earlier rounds.
const ATTEMPTS_HEADER: &str = "x-dispatch-attempts";

/// Everything a message handler needs.
pub struct Pipeline {
    pub pool: PgPool,
    pub broker: Broker,
    pub relay: Relay,
    pub hashing: crate::hashing::Hashing,
    pub sms: Sms,
    pub whatsapp: Whatsapp,
    pub inline_attempts: usize,
    pub retry_schedule: Vec<Duration>,
    /// Batched claims and `sent` records.
    pub batches: Arc<crate::batch::Batches>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] shared::amqp::PublishError),
    #[error("{0}")]
    Batch(#[from] crate::batch::BatchError),
    #[error("{0}")]
    Hashing(#[from] crate::hashing::HashingStopped),
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// Which provider a code goes through.
#[derive(Clone, Copy)]
enum Route<'a> {
    Sms(&'a Sms),
    Whatsapp(&'a Whatsapp),
}

impl Pipeline {
    /// The consumer's entry point.
    pub async fn handle(self: Arc<Self>, delivery: Delivery) -> Handled {
        let Ok(event) = serde_json::from_slice::<OtpRequested>(&delivery.data) else {
            tracing::warn!("undecodable otp.requested message; dead-lettering it");
            return Handled::Reject;
        };
        let earlier = earlier_attempts(&delivery.properties);
        let id = event.validation_id.clone();
        match self.process(&event, earlier).await {
            Ok(handled) => handled,
            Err(error) => {
                tracing::warn!(validation_id = %id, %error, "dispatch failed on our side; parking the message");
                match self.park(&event, earlier, self.retry_schedule[0]).await {
                    Ok(()) => Handled::Ack,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Handled::Requeue
                    }
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(validation_id = %event.validation_id))]
    async fn process(&self, event: &OtpRequested, earlier: u32) -> Result<Handled, PipelineError> {
        let started = Instant::now();
        let loaded = store::load(&self.batches, &event.validation_id).await?;
        metrics::histogram!("dispatch_stage_seconds", "stage" => "load").record(started.elapsed().as_secs_f64());
        let Some(target) = loaded else {
            tracing::warn!("no such validation; dead-lettering the message");
            return Ok(Handled::Reject);
        };
        let validation = &target.validation;
        match plan::plan(validation, Utc::now()) {
            Plan::Skip => {
                tracing::debug!(status = %validation.status, "already handled");
                return Ok(Handled::Ack);
            }
            Plan::FailExpired => {
                tracing::info!("expired before it could be sent; failing it");
                self.fail(&validation.id, FailedReason::Expired, None).await?;
                return Ok(Handled::Ack);
            }
            Plan::Send => {}
        }
        let code = match target.test_code.as_deref().map(OtpCode::parse) {
            Some(Ok(code)) => code,
            _ => OtpCode::generate(u8::try_from(validation.otp_length).unwrap_or(6)),
        };
        let started = Instant::now();
        let hash = self.hashing.hash(&validation.id, &code).await?;
        metrics::histogram!("dispatch_stage_seconds", "stage" => "hash").record(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let claimed = store::claim(&self.batches, &validation.id, &hash).await?;
        metrics::histogram!("dispatch_stage_seconds", "stage" => "claim").record(started.elapsed().as_secs_f64());
        if !claimed {
            return self.claimed_elsewhere(event, earlier).await;
        }
        let route = match validation.phone_gateway {
            // A test number, or gateway `none`: nothing leaves the building.
            _ if target.test_code.is_some() => return self.record_unsent(&validation.id, "test").await,
            Gateway::None => return self.record_unsent(&validation.id, "none").await,
            Gateway::Sms => Route::Sms(&self.sms),
            Gateway::Whatsapp => Route::Whatsapp(&self.whatsapp),
        };
        self.deliver(event, &target, route, &code, earlier).await
    }

    async fn record_unsent(&self, id: &ObjectId, provider: &'static str) -> Result<Handled, PipelineError> {
        store::mark_sent(&self.batches, id, provider, None, 0, Utc::now()).await?;
        metrics::counter!("otp_sent_total", "provider" => provider).increment(1);
        tracing::info!(provider, "no message sent (test number or gateway none)");
        Ok(Handled::Ack)
    }

    /// Another instance holds the send (or it moved on meanwhile).
    async fn claimed_elsewhere(&self, event: &OtpRequested, earlier: u32) -> Result<Handled, PipelineError> {
        match store::lease_left(&self.pool, &event.validation_id).await? {
            None => Ok(Handled::Ack),
            Some(left) => {
                // The holder may have died: look again once its lease has run out.
                let tier = plan::tier_for(&self.retry_schedule, left);
                self.park(event, earlier, tier).await?;
                Ok(Handled::Ack)
            }
        }
    }

    async fn deliver(
        &self,
        event: &OtpRequested,
        target: &Target,
        mut route: Route<'_>,
        code: &OtpCode,
        earlier: u32,
    ) -> Result<Handled, PipelineError> {
        let validation = &target.validation;
        let id = &validation.id;
        let mut provider_name = match route {
            Route::Sms(p) => p.name(),
            Route::Whatsapp(p) => p.name(),
        };
        let e164 = format!("{}{}", validation.country_code, validation.phone);
        let title = validation
            .phone_data
            .0
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_owned();
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .with_max_times(self.inline_attempts.saturating_sub(1))
            .build();
        let mut attempts = earlier;
        loop {
            let now = Utc::now();
            if validation.is_expired(now) {
                return self
                    .give_up(id, FailedReason::ProviderUnavailable, provider_name, None, attempts)
                    .await;
            }
            let minutes = ((validation.expires_at - now).num_seconds() + 59) / 60;
            let outbound = Outbound {
                to: e164.clone(),
                text: sms_text(validation.language, &title, code.expose(), minutes),
                code: code.expose().to_owned(),
                language: validation.language,
            };
            attempts += 1;
            let started = Instant::now();
            let result = match route {
                Route::Sms(p) => p.send(&outbound).await,
                Route::Whatsapp(p) => p.send(&outbound).await,
            };
            metrics::histogram!("provider_latency_seconds", "provider" => provider_name)
                .record(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(receipt) => {
                    let sent_at = Utc::now();
                    store::mark_sent(
                        &self.batches,
                        id,
                        provider_name,
                        Some(&receipt.message_id),
                        attempts,
                        sent_at,
                    )
                    .await?;
                    metrics::counter!("otp_sent_total", "provider" => provider_name).increment(1);
                    metrics::histogram!("otp_queue_lag_seconds")
                        .record((sent_at - validation.created_at).num_milliseconds() as f64 / 1000.0);
                    tracing::info!(provider = provider_name, attempts, message_id = %receipt.message_id, "code sent");
                    return Ok(Handled::Ack);
                }
                Err(error) => error,
            };
            let can_fall_back = matches!(route, Route::Whatsapp(_)) && target.sms_fallback;
            let park = self.retry_schedule[0];
            match plan::after_failure(
                &error,
                backoff.next(),
                park,
                can_fall_back,
                Utc::now(),
                validation.expires_at,
            ) {
                AfterFailure::RetryInline(wait) => {
                    metrics::counter!("otp_retried_total", "provider" => provider_name).increment(1);
                    tracing::info!(provider = provider_name, attempts, wait_ms = wait.as_millis() as u64, error = %error, "provider failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                AfterFailure::FallBackToSms => {
                    tracing::info!("not a WhatsApp user; falling back to SMS");
                    route = Route::Sms(&self.sms);
                    provider_name = self.sms.name();
                }
                AfterFailure::Park(wait) => {
                    metrics::counter!("otp_retried_total", "provider" => provider_name).increment(1);
                    let tier = plan::tier_for(&self.retry_schedule, wait);
                    tracing::info!(provider = provider_name, attempts, tier_ms = tier.as_millis() as u64, error = %error, "provider failing; parking the message");
                    store::release(&self.pool, id).await?;
                    self.park(event, attempts, tier).await?;
                    return Ok(Handled::Ack);
                }
                AfterFailure::GiveUpUnavailable => {
                    return self
                        .give_up(
                            id,
                            FailedReason::ProviderUnavailable,
                            provider_name,
                            Some(&error),
                            attempts,
                        )
                        .await;
                }
                AfterFailure::GiveUpRejected => {
                    return self
                        .give_up(
                            id,
                            FailedReason::ProviderRejected,
                            provider_name,
                            Some(&error),
                            attempts,
                        )
                        .await;
                }
            }
        }
    }

    async fn give_up(
        &self,
        id: &ObjectId,
        reason: FailedReason,
        provider: &str,
        error: Option<&SendError>,
        attempts: u32,
    ) -> Result<Handled, PipelineError> {
        tracing::warn!(provider, attempts, reason = %reason, error = error.map(|e| e.to_string()), "giving up on this code");
        let failure = ProviderFailure {
            provider,
            code: error.and_then(SendError::code),
            message: error
                .map(SendError::message)
                .unwrap_or("the code expired before the provider accepted it"),
            attempts,
        };
        self.fail(id, reason, Some(failure)).await?;
        metrics::counter!("otp_failed_total", "provider" => provider.to_owned(), "reason" => reason.as_str())
            .increment(1);
        Ok(Handled::Ack)
    }

    async fn fail(
        &self,
        id: &ObjectId,
        reason: FailedReason,
        failure: Option<ProviderFailure<'_>>,
    ) -> Result<(), PipelineError> {
        if let Some(message) = store::fail(&self.pool, id, reason, failure).await? {
            self.relay.publish_soon([message]);
        }
        Ok(())
    }

    /// Re-publishes the message to the delay tier `tier` (with a confirm);
    /// it comes back to the work queue when the tier's TTL runs out.
    async fn park(&self, event: &OtpRequested, attempts: u32, tier: Duration) -> Result<(), PipelineError> {
        let payload = serde_json::to_vec(event)?;
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
        let properties = BasicProperties::default()
            .with_message_id(event.event_id.as_str().into())
            .with_headers(headers);
        let queue = Topology::retry_queue(&self.broker.topology().dispatch_queue(), tier);
        self.broker.publish_to_queue(&queue, &payload, properties).await?;
        Ok(())
    }
}

fn earlier_attempts(properties: &BasicProperties) -> u32 {
    shared::amqp::header_u32(properties.headers().as_ref(), ATTEMPTS_HEADER).unwrap_or(0)
}
