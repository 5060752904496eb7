//! Every exchange and queue, declared in one place (docs/contract.md §6):
//!
//! - `otp.events`, a durable topic exchange every event is published to;
//! - work queues (quorum): `otp.dispatch` (`otp.requested`, `otp.failover`) and `otp.webhooks`
//!   (`phone_validation.*`), dead-lettering to `<queue>.dlq` through `otp.dlx`;
//! - delay tiers `<queue>.delay.<ms>ms` (quorum): no consumers, a per-queue
//!   TTL, and expired messages dead-lettered straight back into the work queue.
//!
//! Every queue is a quorum queue, so a cluster of three loses none of them
//! with a node. (Builds before this one declared classic delay tiers named
//! `<queue>.retry.<ms>ms`: those lived on one node, and while it was down no
//! retry could be parked. The new names keep the two apart; an old tier
//! empties by itself, its messages returning to the work queue when due.)

use crate::events::routing;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// Redeliveries (consumer crashes, requeues) before a quorum queue gives up on
/// a message and dead-letters it: a poison message cannot loop for ever.
const DELIVERY_LIMIT: i64 = 50;

/// Names and declarations, all under one optional prefix.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    prefix: String,
    /// Queues vanish after this long unused (`x-expires`): for test namespaces.
    queue_expires: Option<Duration>,
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn millis(duration: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            queue_expires: None,
        }
    }

    /// Lets every queue expire after `after` without consumers (tests).
    pub fn with_queue_expiry(mut self, after: Duration) -> Self {
        self.queue_expires = Some(after);
        self
    }

    pub fn exchange(&self) -> String {
        format!("{}otp.events", self.prefix)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}otp.dlx", self.prefix)
    }

    pub fn dispatch_queue(&self) -> String {
        format!("{}otp.dispatch", self.prefix)
    }

    pub fn webhook_queue(&self) -> String {
        format!("{}otp.webhooks", self.prefix)
    }

    /// Where `queue`'s messages go when they exhaust their retries.
    pub fn dead_letter_queue(queue: &str) -> String {
        format!("{queue}.dlq")
    }

    /// The delay tier of `queue` that holds messages for `delay`.
    pub fn retry_queue(queue: &str, delay: Duration) -> String {
        format!("{queue}.delay.{}ms", delay.as_millis())
    }

    fn base_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if let Some(expires) = self.queue_expires {
            args.insert("x-expires".into(), millis(expires));
        }
        args
    }

    /// The exchanges, the work queues and their dead-letter queues. Every
    /// process declares these at connect, so no event is published into a void.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.exchange().as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange().as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        self.declare_work_queue(
            channel,
            &self.dispatch_queue(),
            &[routing::OTP_REQUESTED, routing::OTP_FAILOVER],
        )
        .await?;
        self.declare_work_queue(
            channel,
            &self.webhook_queue(),
            &[
                routing::VALIDATED,
                routing::FAILED,
                routing::FRAUD_GUARD_BLOCKED,
                routing::SENT,
                routing::DELIVERED,
                routing::UNDELIVERED,
            ],
        )
        .await?;
        Ok(())
    }

    async fn declare_work_queue(&self, channel: &Channel, queue: &str, keys: &[&str]) -> lapin::Result<()> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dlq = Self::dead_letter_queue(queue);
        let mut args = self.base_args();
        args.insert("x-queue-type".into(), long("quorum"));
        channel
            .queue_declare(dlq.as_str().into(), durable, args.clone())
            .await?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                self.dead_letter_exchange().as_str().into(),
                dlq.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        args.insert("x-dead-letter-exchange".into(), long(&self.dead_letter_exchange()));
        args.insert("x-dead-letter-routing-key".into(), long(&dlq));
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        channel.queue_declare(queue.into(), durable, args).await?;
        for key in keys {
            channel
                .queue_bind(
                    queue.into(),
                    self.exchange().as_str().into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// A delay tier for `queue`: messages published to it (default exchange,
    /// routing key = its name) come back to `queue` after `delay`. A message's
    /// own `expiration`, when shorter, wins (that is how jitter is applied).
    /// A quorum queue (RabbitMQ 3.10 or later), like the work queues: a
    /// classic one lives on the node that declared it, and while that node is
    /// down a publish into it comes back unroutable and declaring it again
    /// fails (`shared/tests/it/failover.rs`).
    pub async fn declare_retry_tier(&self, channel: &Channel, queue: &str, delay: Duration) -> lapin::Result<String> {
        let name = Self::retry_queue(queue, delay);
        let mut args = self.base_args();
        args.insert("x-queue-type".into(), long("quorum"));
        args.insert("x-message-ttl".into(), millis(delay));
        args.insert("x-dead-letter-exchange".into(), long(""));
        args.insert("x-dead-letter-routing-key".into(), long(queue));
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        Ok(name)
    }

    /// Deletes the work queues and their dead-letter queues (test clean-up).
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        for queue in [self.dispatch_queue(), self.webhook_queue()] {
            for name in [Self::dead_letter_queue(&queue), queue] {
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await?;
            }
        }
        Ok(())
    }
}
