//! One supervised connection per process. A background task connects,
//! declares the topology, opens a confirm-mode channel for publishing, and
//! reconnects with backoff whenever the connection dies. Callers never block
//! on a dead broker: `publish` fails at once while it is down.
//!
//! `AMQP_URL` may list several brokers, comma-separated: the nodes of one
//! RabbitMQ cluster. The supervisor tries them in turn, starting with the one
//! after the node that last failed or was lost (the first, at start), so a
//! process moves on to a live node instead of hammering a dead one. Publishes
//! whose confirm was outstanding when a connection died fail (lapin rejects
//! every pending confirm of a channel whose connection errors; see
//! `shared/tests/it/failover.rs`), so the outbox publishes them again: nothing
//! accepted is lost, and a message whose confirm was lost may be delivered
//! twice, which consumers already tolerate (at-least-once).

mod supervisor;
mod urls;

pub use urls::{connect_first, parse_url_list, BrokerUrl, UrlListError};

use supervisor::Supervisor;
use urls::parse_entries;

use super::Topology;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Event};
use lapin::{Confirmation, PublisherConfirm};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// How long a publish may wait for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// How long one node may take to accept a connection and the declarations
/// before the next node is tried (a node that hangs must not block failover).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one new publisher channel per this long (see `Broker::confirm`).
const RENEW_INTERVAL: Duration = Duration::from_secs(1);

/// Why a publish did not land.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0}")]
    Unroutable(String),
    #[error("RabbitMQ did not confirm in time")]
    ConfirmTimeout,
}

#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
    /// `host:port` of the node this connection is to.
    node: String,
}

/// A handle on the process's broker connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    live: watch::Receiver<Option<Live>>,
    /// Asks the supervisor for a new publisher channel (after a nack).
    renew: Arc<Notify>,
    topology: Topology,
}

impl Broker {
    /// Starts the supervisor; returns at once, connected or not. `url` is
    /// one AMQP URL or several, comma-separated (see [`parse_url_list`]); a
    /// malformed entry is logged and skipped here (configuration reading
    /// refuses it before this is called).
    pub fn start(url: SecretString, topology: Topology, name: &str, cancel: CancellationToken) -> Self {
        let (sender, live) = watch::channel(None);
        let mut urls = Vec::new();
        for entry in parse_entries(url.expose_secret()) {
            match entry {
                Ok(url) => urls.push(url),
                Err(error) => tracing::error!(connection = %name, %error, "AMQP_URL: skipping an entry"),
            }
        }
        let renew = Arc::new(Notify::new());
        let supervisor = Supervisor {
            urls,
            topology: topology.clone(),
            name: name.to_owned(),
            sender,
            renew: renew.clone(),
        };
        tokio::spawn(supervisor.run(cancel));
        Self { live, renew, topology }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn is_connected(&self) -> bool {
        self.live
            .borrow()
            .as_ref()
            .is_some_and(|live| live.connection.status().connected())
    }

    /// Messages ready in `queue` now (a passive declare), `None` when it
    /// cannot be asked (no connection, no such queue).
    pub async fn queue_messages(&self, queue: &str) -> Option<u32> {
        let channel = self.channel().await.ok()?;
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
            .await
            .ok();
        let _ = channel.close(200, "sampled".into()).await;
        declared.map(|queue| queue.message_count())
    }

    /// `host:port` of the node the process is connected to, if any.
    pub fn connected_node(&self) -> Option<String> {
        self.live
            .borrow()
            .as_ref()
            .filter(|live| live.connection.status().connected())
            .map(|live| live.node.clone())
    }

    /// Waits until the supervisor has closed the connection (after the
    /// token given to `start` was cancelled).
    pub async fn wait_closed(&self) {
        let mut live = self.live.clone();
        let _ = live.wait_for(Option::is_none).await;
    }

    /// Waits until connected, or `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut live = self.live.clone();
        tokio::time::timeout(timeout, live.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A fresh channel (for a consumer), waiting for a connection if needed.
    pub async fn channel(&self) -> Result<Channel, PublishError> {
        let mut live = self.live.clone();
        let connection = {
            let current = live
                .wait_for(Option::is_some)
                .await
                .map_err(|_| PublishError::NotConnected)?;
            current
                .as_ref()
                .map(|l| l.connection.clone())
                .ok_or(PublishError::NotConnected)?
        };
        Ok(connection.create_channel().await?)
    }

    /// Publishes a persistent, mandatory message and returns the pending
    /// confirm, so callers can pipeline many publishes and await them together.
    pub async fn start_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, PublishError> {
        let channel = self
            .live
            .borrow()
            .as_ref()
            .map(|live| live.publisher.clone())
            .ok_or(PublishError::NotConnected)?;
        let properties = properties
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_timestamp(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0));
        Ok(channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                payload,
                properties,
            )
            .await?)
    }

    /// Waits for a confirm from `start_publish`: `Ok` only if the broker took
    /// responsibility for the message and some queue received it. Prefer
    /// [`Broker::confirm`], which also replaces a channel that nacks.
    pub async fn confirmed(confirm: PublisherConfirm, routing_key: &str) -> Result<(), PublishError> {
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| PublishError::ConfirmTimeout)??;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable(routing_key.to_owned())),
            Confirmation::Nack(_) | Confirmation::NotRequested => Err(PublishError::Nacked),
        }
    }

    /// [`Broker::confirmed`], and after a nack, a new publisher channel for
    /// the publishes that follow. A RabbitMQ 3.10 channel whose first publish
    /// to a quorum queue falls in the queue's leader election (a node just
    /// died) can go on nacking every publish to that queue for good, while a
    /// new channel on the same connection is acked at once (seen in
    /// `shared/tests/it/failover.rs`). Nacks are otherwise rare, and renewals
    /// are limited to one a second.
    pub async fn confirm(&self, confirm: PublisherConfirm, routing_key: &str) -> Result<(), PublishError> {
        let outcome = Self::confirmed(confirm, routing_key).await;
        if matches!(outcome, Err(PublishError::Nacked)) {
            self.renew.notify_one();
        }
        outcome
    }

    /// Publishes to the events exchange and waits for the confirm.
    pub async fn publish_event(&self, routing_key: &str, payload: &[u8], message_id: &str) -> Result<(), PublishError> {
        let properties = BasicProperties::default().with_message_id(message_id.into());
        let confirm = self
            .start_publish(&self.topology.exchange(), routing_key, payload, properties)
            .await?;
        self.confirm(confirm, routing_key).await
    }

    /// Publishes straight to a queue (default exchange) and waits for the
    /// confirm: retries into delay tiers, dead letters, replays.
    pub async fn publish_to_queue(
        &self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let confirm = self.start_publish("", queue, payload, properties).await?;
        self.confirm(confirm, queue).await
    }
}
