//! One supervised connection per process. A background task connects,
//! declares the topology, opens a confirm-mode channel for publishing, and
//! reconnects with backoff whenever the connection dies. Callers never block
//! on a dead broker: `publish` fails at once while it is down.

use super::Topology;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Event};
use lapin::{Confirmation, PublisherConfirm};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a publish may wait for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

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
}

/// A handle on the process's broker connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    live: watch::Receiver<Option<Live>>,
    topology: Topology,
}

impl Broker {
    /// Starts the supervisor; returns at once, connected or not.
    pub fn start(url: SecretString, topology: Topology, name: &str, cancel: CancellationToken) -> Self {
        let (sender, live) = watch::channel(None);
        let supervisor = Supervisor {
            url,
            topology: topology.clone(),
            name: name.to_owned(),
            sender,
        };
        tokio::spawn(supervisor.run(cancel));
        Self { live, topology }
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
    /// responsibility for the message and some queue received it.
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

    /// Publishes to the events exchange and waits for the confirm.
    pub async fn publish_event(&self, routing_key: &str, payload: &[u8], message_id: &str) -> Result<(), PublishError> {
        let properties = BasicProperties::default().with_message_id(message_id.into());
        let confirm = self
            .start_publish(&self.topology.exchange(), routing_key, payload, properties)
            .await?;
        Self::confirmed(confirm, routing_key).await
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
        Self::confirmed(confirm, queue).await
    }
}

struct Supervisor {
    url: SecretString,
    topology: Topology,
    name: String,
    sender: watch::Sender<Option<Live>>,
}

impl Supervisor {
    async fn run(self, cancel: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok(live) => {
                    delay = Duration::from_millis(100);
                    tracing::info!(connection = %self.name, "connected to RabbitMQ");
                    let connection = live.connection.clone();
                    let publisher = live.publisher.clone();
                    self.sender.send_replace(Some(live));
                    let closed = self.watch(&connection, &publisher, &cancel).await;
                    self.sender.send_replace(None);
                    if !closed {
                        let _ = connection.close(200, "shutdown".into()).await;
                        return;
                    }
                    tracing::warn!(connection = %self.name, "lost the RabbitMQ connection; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(connection = %self.name, %error, retry_in_ms = delay.as_millis() as u64, "RabbitMQ unreachable");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    async fn connect(&self) -> Result<Live, lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let connection = Connection::connect(self.url.expose_secret(), properties).await?;
        let setup = connection.create_channel().await?;
        self.topology.declare(&setup).await?;
        let _ = setup.close(200, "declared".into()).await;
        let publisher = connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Live {
            connection: Arc::new(connection),
            publisher,
        })
    }

    /// Returns `true` when the connection died, `false` on shutdown.
    async fn watch(&self, connection: &Connection, publisher: &Channel, cancel: &CancellationToken) -> bool {
        let mut events = connection.events_listener();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return false,
                event = events.next() => match event {
                    Some(Event::Error(error)) => {
                        tracing::warn!(connection = %self.name, %error, "RabbitMQ connection error");
                        return true;
                    }
                    None => return true,
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    if !connection.status().connected() || !publisher.status().connected() {
                        return true;
                    }
                }
            }
        }
    }
}
