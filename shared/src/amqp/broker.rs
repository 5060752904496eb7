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
//! `shared/tests/failover.rs`), so the outbox publishes them again: nothing
//! accepted is lost, and a message whose confirm was lost may be delivered
//! twice, which consumers already tolerate (at-least-once).

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

/// One broker of `AMQP_URL`: its URL (secret: it carries the password) and
/// its `host:port`, the only part that is ever logged.
#[derive(Clone)]
pub struct BrokerUrl {
    url: SecretString,
    node: String,
}

impl BrokerUrl {
    /// `host:port`, for logs.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn url(&self) -> &SecretString {
        &self.url
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What is wrong with a list of broker URLs. Never quotes an entry: it may
/// hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlListError {
    #[error("no broker URL given")]
    Empty,
    #[error("entry {index} of {count} is not an AMQP URL ({reason}); separate URLs with commas and percent-encode any comma in a password as %2C")]
    Malformed { index: usize, count: usize, reason: String },
}

/// Every non-empty entry of a comma-separated list of AMQP URLs (trimmed),
/// each parsed or with what is wrong with it, in order.
fn parse_entries(raw: &str) -> Vec<Result<BrokerUrl, UrlListError>> {
    let entries: Vec<&str> = raw.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let count = entries.len();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let malformed = |reason: String| UrlListError::Malformed {
                index: i + 1,
                count,
                // The parser may echo its input, password included.
                reason: if reason.contains(entry) {
                    "not a URL".to_owned()
                } else {
                    reason
                },
            };
            let uri: AMQPUri = entry.parse().map_err(malformed)?;
            if uri.authority.host.is_empty() {
                return Err(malformed("no host".to_owned()));
            }
            Ok(BrokerUrl {
                node: format!("{}:{}", uri.authority.host, uri.authority.port),
                url: SecretString::from((*entry).to_owned()),
            })
        })
        .collect()
}

/// Parses `AMQP_URL`: one AMQP URL or several separated by commas (the nodes
/// of a cluster). Spaces around entries and empty entries are ignored; any
/// malformed entry is an error, so a typo in one node's URL stops the process
/// at start rather than showing up during a failover.
pub fn parse_url_list(raw: &str) -> Result<Vec<BrokerUrl>, UrlListError> {
    let urls = parse_entries(raw).into_iter().collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(UrlListError::Empty);
    }
    Ok(urls)
}

/// The order a supervisor tries the nodes in: each round starts at the node
/// after the last one that failed or was lost, and goes once round the list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rotation {
    count: usize,
    start: usize,
}

impl Rotation {
    fn new(count: usize) -> Self {
        Self { count, start: 0 }
    }

    /// The nodes to try next, in order (each once).
    fn round(&self) -> Vec<usize> {
        (0..self.count).map(|k| (self.start + k) % self.count).collect()
    }

    /// Node `index` refused, timed out or dropped its connection: the next
    /// round starts after it.
    fn failed(&mut self, index: usize) {
        if self.count > 0 {
            self.start = (index + 1) % self.count;
        }
    }
}

/// Connects to the first node of `urls` (a list as in `AMQP_URL`) that
/// answers, for one-shot tools; the error names every node that did not.
pub async fn connect_first(urls: &SecretString, properties: ConnectionProperties) -> anyhow::Result<Connection> {
    let urls = parse_url_list(urls.expose_secret())?;
    let mut failures = Vec::new();
    for url in &urls {
        match Connection::connect(url.url.expose_secret(), properties.clone()).await {
            Ok(connection) => return Ok(connection),
            Err(error) => failures.push(format!("{}: {error}", url.node)),
        }
    }
    anyhow::bail!("no RabbitMQ node answered ({})", failures.join("; "))
}

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
    /// `shared/tests/failover.rs`). Nacks are otherwise rare, and renewals
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

struct Supervisor {
    urls: Vec<BrokerUrl>,
    topology: Topology,
    name: String,
    sender: watch::Sender<Option<Live>>,
    renew: Arc<Notify>,
}

/// How one connection ended.
enum Ended {
    /// It died: try the next node.
    Lost,
    /// The process is shutting down.
    Shutdown,
}

impl Supervisor {
    async fn run(self, cancel: CancellationToken) {
        if self.urls.is_empty() {
            tracing::error!(connection = %self.name, "AMQP_URL lists no usable broker; not connecting");
            return;
        }
        let mut rotation = Rotation::new(self.urls.len());
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            let mut lost = false;
            for index in rotation.round() {
                let url = &self.urls[index];
                let attempt = tokio::select! {
                    _ = cancel.cancelled() => return,
                    attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, self.connect(url)) => attempt,
                };
                match attempt {
                    Ok(Ok(live)) => {
                        delay = FIRST_RECONNECT_DELAY;
                        match self.serve(live, &cancel).await {
                            Ended::Shutdown => return,
                            Ended::Lost => {
                                tracing::warn!(connection = %self.name, node = %url.node, "lost the RabbitMQ connection; trying the next node");
                                rotation.failed(index);
                                lost = true;
                                break;
                            }
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(connection = %self.name, node = %url.node, %error, "RabbitMQ node unreachable");
                        rotation.failed(index);
                    }
                    Err(_) => {
                        tracing::warn!(connection = %self.name, node = %url.node, timeout_ms = ATTEMPT_TIMEOUT.as_millis() as u64, "RabbitMQ node did not answer in time");
                        rotation.failed(index);
                    }
                }
            }
            if !lost {
                tracing::warn!(connection = %self.name, nodes = self.urls.len(), retry_in_ms = delay.as_millis() as u64, "no RabbitMQ node answered");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    /// Publishes `live` to the handles until the connection dies or the
    /// process shuts down (then closes it).
    async fn serve(&self, live: Live, cancel: &CancellationToken) -> Ended {
        tracing::info!(connection = %self.name, node = %live.node, "connected to RabbitMQ");
        let connection = live.connection.clone();
        self.sender.send_replace(Some(live.clone()));
        let lost = self.watch(live, cancel).await;
        self.sender.send_replace(None);
        if lost {
            // Whatever lapin still holds of it goes; pending confirms have failed.
            let _ = connection.close(320, "connection lost".into()).await;
            Ended::Lost
        } else {
            let _ = connection.close(200, "shutdown".into()).await;
            Ended::Shutdown
        }
    }

    async fn connect(&self, url: &BrokerUrl) -> Result<Live, lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let connection = Connection::connect(url.url.expose_secret(), properties).await?;
        let setup = async {
            let channel = connection.create_channel().await?;
            self.topology.declare(&channel).await?;
            let _ = channel.close(200, "declared".into()).await;
            let publisher = connection.create_channel().await?;
            publisher.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(publisher)
        };
        match setup.await {
            Ok(publisher) => Ok(Live {
                connection: Arc::new(connection),
                publisher,
                node: url.node.clone(),
            }),
            Err(error) => {
                // Connected but unusable (e.g. a node cut off from its
                // cluster's majority cannot declare quorum queues).
                let _ = connection.close(200, "setup failed".into()).await;
                Err(error)
            }
        }
    }

    /// Returns `true` when the connection died, `false` on shutdown. Replaces
    /// the publisher channel when a handle asks (after a nack).
    async fn watch(&self, mut live: Live, cancel: &CancellationToken) -> bool {
        let mut events = live.connection.events_listener();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // A nack just before connecting was about another channel.
        let _ = tokio::time::timeout(Duration::ZERO, self.renew.notified()).await;
        let mut renewed_at: Option<tokio::time::Instant> = None;
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
                    if !live.connection.status().connected() || !live.publisher.status().connected() {
                        return true;
                    }
                }
                _ = self.renew.notified() => {
                    if let Some(at) = renewed_at {
                        tokio::select! {
                            _ = cancel.cancelled() => return false,
                            _ = tokio::time::sleep_until(at + RENEW_INTERVAL) => {}
                        }
                    }
                    renewed_at = Some(tokio::time::Instant::now());
                    match self.renew_publisher(&live).await {
                        Ok(renewed) => {
                            live = renewed;
                            self.sender.send_replace(Some(live.clone()));
                        }
                        Err(error) => {
                            tracing::warn!(connection = %self.name, %error, "cannot open a new publisher channel");
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// `live` with a new confirm-mode publisher channel. The old one is
    /// closed once the confirms it still owes have had their time.
    async fn renew_publisher(&self, live: &Live) -> Result<Live, lapin::Error> {
        let publisher = live.connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        let old = live.publisher.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CONFIRM_TIMEOUT).await;
            let _ = old.close(200, "replaced".into()).await;
        });
        tracing::info!(connection = %self.name, node = %live.node, "a publish was nacked; publishing on a new channel");
        Ok(Live {
            connection: live.connection.clone(),
            publisher,
            node: live.node.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(raw: &str) -> Vec<String> {
        parse_url_list(raw)
            .unwrap()
            .iter()
            .map(|u| u.node().to_owned())
            .collect()
    }

    #[test]
    fn one_url_is_a_list_of_one() {
        assert_eq!(nodes("amqp://guest:guest@127.0.0.1:5672/%2f"), ["127.0.0.1:5672"]);
        // The default port when none is given.
        assert_eq!(nodes("amqp://rabbit.internal"), ["rabbit.internal:5672"]);
        assert_eq!(nodes("amqps://rabbit.internal/%2f"), ["rabbit.internal:5671"]);
    }

    #[test]
    fn several_urls_are_trimmed_and_empty_entries_ignored() {
        let raw = " amqp://u:p@10.0.0.1:5672/%2f ,, amqp://u:p@10.0.0.2:5673/%2f,\tamqp://u:p@node-c:5674/otp , ";
        assert_eq!(nodes(raw), ["10.0.0.1:5672", "10.0.0.2:5673", "node-c:5674"]);
        let urls = parse_url_list(raw).unwrap();
        // Each keeps its own full URL (credentials and vhost included), trimmed.
        assert_eq!(urls[0].url().expose_secret(), "amqp://u:p@10.0.0.1:5672/%2f");
        assert_eq!(urls[2].url().expose_secret(), "amqp://u:p@node-c:5674/otp");
    }

    #[test]
    fn a_list_without_urls_is_refused() {
        assert_eq!(parse_url_list("").unwrap_err(), UrlListError::Empty);
        assert_eq!(parse_url_list(" , ,").unwrap_err(), UrlListError::Empty);
    }

    #[test]
    fn a_malformed_entry_is_refused_by_position_without_its_text() {
        let raw = "amqp://guest:s3cret@10.0.0.1:5672/%2f,amqp://guest:s3cret@10.0.0.2:notaport/%2f";
        let error = parse_url_list(raw).unwrap_err();
        assert!(
            matches!(error, UrlListError::Malformed { index: 2, count: 2, .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains("s3cret"), "{error}");
        for raw in [
            "http://guest:s3cret@10.0.0.1:5672/",
            "guest:s3cret@10.0.0.1",
            "s3cret",
            "amqp://guest:s3cret@:5672/",
        ] {
            let error = parse_url_list(raw).unwrap_err();
            assert!(
                matches!(error, UrlListError::Malformed { index: 1, .. }),
                "{raw}: {error:?}"
            );
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn the_lenient_parse_keeps_the_good_entries_in_order() {
        let entries = parse_entries("amqp://a:1, nonsense ,amqp://c:3");
        assert!(entries[0].is_ok() && entries[1].is_err() && entries[2].is_ok());
        assert_eq!(entries[2].as_ref().unwrap().node(), "c:3");
    }

    #[test]
    fn debug_output_hides_the_url() {
        let urls = parse_url_list("amqp://guest:s3cret@10.0.0.1:5672/%2f").unwrap();
        let shown = format!("{urls:?}");
        assert!(shown.contains("10.0.0.1:5672") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn the_first_round_goes_through_the_list_in_order() {
        assert_eq!(Rotation::new(3).round(), [0, 1, 2]);
        assert_eq!(Rotation::new(1).round(), [0]);
    }

    #[test]
    fn after_a_failure_the_next_round_starts_at_the_following_node() {
        let mut rotation = Rotation::new(3);
        rotation.failed(0); // node 0 lost
        assert_eq!(rotation.round(), [1, 2, 0]);
        rotation.failed(2); // the last node wraps round to the first
        assert_eq!(rotation.round(), [0, 1, 2]);
        let mut single = Rotation::new(1);
        single.failed(0);
        assert_eq!(single.round(), [0]);
    }

    /// Replays the supervisor's loop against a scripted cluster: which nodes
    /// it tries, in what order, as nodes die and come back.
    #[test]
    fn the_supervisor_moves_on_instead_of_hammering_a_dead_node() {
        fn connect(rotation: &mut Rotation, up: &[bool], tried: &mut Vec<usize>) -> Option<usize> {
            for index in rotation.round() {
                tried.push(index);
                if up[index] {
                    return Some(index);
                }
                rotation.failed(index);
            }
            None
        }
        let mut rotation = Rotation::new(3);
        let mut tried = Vec::new();
        // All up: the first node.
        assert_eq!(connect(&mut rotation, &[true, true, true], &mut tried), Some(0));
        // Node 0 dies under us: the next attempt starts at node 1.
        rotation.failed(0);
        assert_eq!(connect(&mut rotation, &[false, true, true], &mut tried), Some(1));
        // Node 1 dies too: node 2, not the dead node 0 first.
        rotation.failed(1);
        assert_eq!(connect(&mut rotation, &[false, false, true], &mut tried), Some(2));
        // Node 2 dies and node 0 is back: 0 is tried after 2 is lost.
        rotation.failed(2);
        assert_eq!(connect(&mut rotation, &[true, false, false], &mut tried), Some(0));
        assert_eq!(tried, [0, 1, 2, 0]);

        // Everything down: every round tries each node once, starting after
        // the last failure, which is where the previous round started.
        let mut tried = Vec::new();
        rotation.failed(0);
        assert_eq!(connect(&mut rotation, &[false, false, false], &mut tried), None);
        assert_eq!(connect(&mut rotation, &[false, false, false], &mut tried), None);
        assert_eq!(tried, [1, 2, 0, 1, 2, 0]);
        // Then node 0 comes back: found within one round.
        let mut tried = Vec::new();
        assert_eq!(connect(&mut rotation, &[true, false, false], &mut tried), Some(0));
        assert_eq!(tried, [1, 2, 0]);
    }
}
