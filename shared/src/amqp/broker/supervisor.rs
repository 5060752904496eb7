//! The supervisor: connects to a node, declares the topology, opens the
//! publisher channel, and reconnects (to the next node) when it is lost.

use super::urls::{BrokerUrl, Rotation};
use super::*;

pub(super) struct Supervisor {
    pub(super) urls: Vec<BrokerUrl>,
    pub(super) topology: Topology,
    pub(super) name: String,
    pub(super) sender: watch::Sender<Option<Live>>,
    pub(super) renew: Arc<Notify>,
}

/// How one connection ended.
enum Ended {
    /// It died: try the next node.
    Lost,
    /// The process is shutting down.
    Shutdown,
}

impl Supervisor {
    pub(super) async fn run(self, cancel: CancellationToken) {
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
        let ended = self.sender.send_replace(None);
        if lost {
            // Whatever lapin still holds of it goes; pending confirms have failed.
            let _ = connection.close(320, "connection lost".into()).await;
            Ended::Lost
        } else {
            // The publisher channel is closed first: left to close itself
            // when dropped, it races the connection's close, and lapin logs
            // that race as a connection error.
            if let Some(ended) = ended {
                let _ = ended.publisher.close(200, "shutdown".into()).await;
            }
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
