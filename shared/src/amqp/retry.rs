//! Retry through delay queues, for every worker: a message that must wait
//! (a provider outage, a webhook receiver answering 500, a lease held by
//! another instance) is re-published into a delay tier of its work queue,
//! confirmed, and only then is the original acknowledged. Nothing waits
//! while holding a message.
//!
//! A tier is a queue with a TTL and no consumers whose expired messages are
//! dead-lettered back into the work queue (declared in `Topology`). Each
//! scheduled delay `d` gets a tier with TTL `d × (1 + JITTER)`; a parked
//! message carries its own, exact expiration, never longer than its tier's.
//!
//! One header counts the attempts a message has already been through, the
//! same for every worker: [`ATTEMPTS`].

use super::{header_u32, BasicProperties, Broker, PublishError, Topology};
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Attempts already made before this delivery (0 on the first).
pub const ATTEMPTS: &str = "x-attempts";
/// Times the message was put off without an attempt (a saturated host, a
/// lease held elsewhere).
pub const DEFERRALS: &str = "x-deferrals";
/// Replays of a dead-lettered message (`otpctl dlq replay` adds one).
pub const ROUND: &str = "x-round";
/// The headers of earlier releases, still read so that messages in flight
/// during an upgrade keep their count.
const LEGACY_ATTEMPT_NUMBER: &str = "x-attempt";
const LEGACY_DISPATCH_ATTEMPTS: &str = "x-dispatch-attempts";

/// A tier's TTL is its scheduled delay plus this fraction, so a delay
/// jittered by up to that much still fits in it.
pub const JITTER: f64 = 0.2;

/// How long one declaration round may take before it is tried again.
const DECLARE_TIMEOUT: Duration = Duration::from_secs(10);

/// The attempts already made, from the message's headers.
pub fn attempts(properties: &BasicProperties) -> u32 {
    let headers = properties.headers().as_ref();
    header_u32(headers, ATTEMPTS)
        .or_else(|| header_u32(headers, LEGACY_ATTEMPT_NUMBER).map(|n| n.saturating_sub(1)))
        .or_else(|| header_u32(headers, LEGACY_DISPATCH_ATTEMPTS))
        .unwrap_or(0)
}

/// A header counter (`DEFERRALS`, `ROUND`), 0 when absent.
pub fn counter(properties: &BasicProperties, name: &str) -> u32 {
    header_u32(properties.headers().as_ref(), name).unwrap_or(0)
}

/// Headers carrying `attempts`, `deferrals` and `round`.
pub fn headers(attempts: u32, deferrals: u32, round: u32) -> FieldTable {
    let mut headers = FieldTable::default();
    for (name, value) in [(ATTEMPTS, attempts), (DEFERRALS, deferrals), (ROUND, round)] {
        headers.insert(name.into(), AMQPValue::LongLongInt(i64::from(value)));
    }
    headers
}

/// The TTL of the tier that carries a scheduled delay.
pub fn tier_ttl(delay: Duration) -> Duration {
    delay.mul_f64(1.0 + JITTER)
}

/// The delay tiers of one work queue.
#[derive(Clone, Debug)]
pub struct DelayQueues {
    queue: String,
    /// Tier TTLs, ascending, distinct.
    tiers: Vec<Duration>,
}

impl DelayQueues {
    /// Tiers for `schedule` (the delays a worker waits between attempts).
    pub fn new(queue: String, schedule: &[Duration]) -> Self {
        let mut tiers: Vec<Duration> = schedule.iter().map(|d| tier_ttl(*d)).collect();
        tiers.sort();
        tiers.dedup();
        Self { queue, tiers }
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn tiers(&self) -> &[Duration] {
        &self.tiers
    }

    /// Where a wait of `delay` goes: (the wait kept, the tier's TTL). The
    /// smallest tier that holds it; a longer wait is cut to the largest tier.
    pub fn tier_for(&self, delay: Duration) -> (Duration, Duration) {
        match self.tiers.iter().find(|tier| **tier >= delay) {
            Some(tier) => (delay, *tier),
            None => {
                let largest = self.tiers.last().copied().unwrap_or(delay);
                (largest, largest)
            }
        }
    }

    /// Declares every tier (idempotent).
    pub async fn declare(&self, broker: &Broker) -> Result<(), PublishError> {
        let channel = broker.channel().await?;
        for tier in &self.tiers {
            broker
                .topology()
                .declare_retry_tier(&channel, &self.queue, *tier)
                .await?;
        }
        let _ = channel.close(200, "tiers declared".into()).await;
        Ok(())
    }

    /// Declares the tiers, trying again until it works (`true`) or `cancel`
    /// fires (`false`): no message is taken before its retries have
    /// somewhere to go.
    pub async fn declare_until_ready(&self, broker: &Broker, cancel: &CancellationToken) -> bool {
        loop {
            let declared = tokio::select! {
                _ = cancel.cancelled() => return false,
                declared = tokio::time::timeout(DECLARE_TIMEOUT, self.declare(broker)) => declared,
            };
            match declared {
                Ok(Ok(())) => {
                    tracing::info!(queue = %self.queue, tiers = self.tiers.len(), "retry tiers declared");
                    return true;
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot declare the retry tiers yet; retrying"),
                Err(_) => tracing::warn!("RabbitMQ took too long to declare the retry tiers; retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Publishes `payload` into the tier for `delay`, expiring after exactly
    /// the wait kept, and waits for the broker's confirm. Returns the wait.
    pub async fn park(
        &self,
        broker: &Broker,
        payload: &[u8],
        properties: BasicProperties,
        delay: Duration,
    ) -> Result<Duration, PublishError> {
        let (wait, tier) = self.tier_for(delay);
        let expiration = wait.as_millis().max(1).to_string();
        let properties = properties.with_expiration(expiration.into());
        let queue = Topology::retry_queue(&self.queue, tier);
        match broker.publish_to_queue(&queue, payload, properties.clone()).await {
            // The tier vanished (deleted by an operator, or expired in tests): declare and try once more.
            Err(PublishError::Unroutable(_)) => {
                self.declare(broker).await?;
                broker.publish_to_queue(&queue, payload, properties).await?;
            }
            other => other?,
        }
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn tiers_hold_their_delay_plus_jitter_and_a_wait_goes_to_the_smallest_that_holds_it() {
        let queues = DelayQueues::new("q".into(), &[secs(5), secs(30), secs(5), secs(120)]);
        assert_eq!(queues.tiers(), &[secs(6), secs(36), secs(144)]);
        assert_eq!(
            queues.tier_for(Duration::from_millis(1)),
            (Duration::from_millis(1), secs(6))
        );
        assert_eq!(queues.tier_for(secs(6)), (secs(6), secs(6)));
        assert_eq!(queues.tier_for(secs(7)), (secs(7), secs(36)));
        assert_eq!(queues.tier_for(secs(86_400)), (secs(144), secs(144)));
    }

    #[test]
    fn attempts_are_read_from_any_integer_and_from_earlier_headers() {
        let with = |name: &str, value: AMQPValue| {
            let mut table = FieldTable::default();
            table.insert(name.into(), value);
            BasicProperties::default().with_headers(table)
        };
        assert_eq!(attempts(&BasicProperties::default()), 0);
        assert_eq!(attempts(&BasicProperties::default().with_headers(headers(3, 1, 2))), 3);
        assert_eq!(attempts(&with(ATTEMPTS, AMQPValue::LongUInt(4))), 4);
        assert_eq!(attempts(&with(LEGACY_ATTEMPT_NUMBER, AMQPValue::LongLongInt(2))), 1);
        assert_eq!(attempts(&with(LEGACY_DISPATCH_ATTEMPTS, AMQPValue::LongUInt(5))), 5);
        let props = BasicProperties::default().with_headers(headers(3, 1, 2));
        assert_eq!((counter(&props, DEFERRALS), counter(&props, ROUND)), (1, 2));
    }
}
