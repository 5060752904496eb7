//! `AMQP_URL` listing several brokers (docs/contract.md §12: every process connects to
//! the first that answers and moves to another when its node goes away,
//! without losing or repeating accepted work), against real brokers: the
//! machine's RabbitMQ on 127.0.0.1:5672, and a throwaway three-node cluster
//! (`.ci/rabbitmq-cluster`, through `testkit::cluster`).
//!
//! Run with `cargo test -p shared --test failover`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use secrecy::SecretString;
use shared::amqp::retry::DelayQueues;
use shared::amqp::{Broker, PublishError};
use shared::events::routing;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::cluster::{scratch_topology, Cluster};
use testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LOCAL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "shared=info".into()))
        .with_test_writer()
        .try_init();
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn message_count(connection: &Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = channel.close(200, "counted".into()).await;
    queue.message_count()
}

/// Takes every message now in `queue` (acking them): their message ids.
async fn drain_ids(connection: &Connection, queue: &str) -> Vec<String> {
    let channel = connection.create_channel().await.unwrap();
    let mut ids = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = message.properties.message_id().as_ref().map(|id| id.to_string());
        ids.push(id.expect("every test message has an id"));
    }
    let _ = channel.close(200, "drained".into()).await;
    ids
}

#[tokio::test]
async fn the_first_broker_that_answers_is_used() {
    init_logs();
    let topology = scratch_topology();
    let cancel = CancellationToken::new();
    let urls = format!("amqp://guest:guest@127.0.0.1:{}/%2f, {LOCAL}", closed_port());
    let broker = Broker::start(SecretString::from(urls), topology.clone(), "test-first", cancel.clone());

    assert!(broker.wait_connected(Duration::from_secs(20)).await, "never connected");
    assert_eq!(broker.connected_node().as_deref(), Some("127.0.0.1:5672"));
    broker
        .publish_event(routing::OTP_REQUESTED, b"{}", "first-answers")
        .await
        .expect("a confirmed publish through the second URL");

    let inspect = Connection::connect(LOCAL, ConnectionProperties::default())
        .await
        .unwrap();
    let ids = drain_ids(&inspect, &topology.dispatch_queue()).await;
    assert_eq!(ids, ["first-answers"]);

    // The one-shot tools (otpctl) take the same list.
    let urls = SecretString::from(format!("amqp://guest:guest@127.0.0.1:{}/%2f,{LOCAL}", closed_port()));
    let tool = shared::amqp::connect_first(&urls, ConnectionProperties::default())
        .await
        .expect("connect_first reaches the second URL");
    let _ = tool.close(200, "bye".into()).await;
    let dead = SecretString::from(format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port()));
    let error = shared::amqp::connect_first(&dead, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("no RabbitMQ node answered (127.0.0.1:"),
        "{error}"
    );

    cancel.cancel();
    broker.wait_closed().await;
    let channel = inspect.create_channel().await.unwrap();
    topology.delete(&channel).await.unwrap();
}

/// A TCP proxy that can hold back everything the server sends (so publisher
/// confirms stay outstanding) and cut every connection.
struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<ProxyState>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ProxyState {
    Open,
    /// Client to server flows; server to client is held back.
    Frozen,
    /// Every connection dropped, new ones refused.
    Cut,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, receiver) = watch::channel(ProxyState::Open);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *receiver.borrow() == ProxyState::Cut {
                    continue;
                }
                tokio::spawn(Self::pipe(inbound, target, receiver.clone()));
            }
        });
        Self { addr, state }
    }

    async fn pipe(inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<ProxyState>) {
        let Ok(outbound) = TcpStream::connect(target).await else {
            return;
        };
        let (mut client_read, mut client_write) = inbound.into_split();
        let (mut server_read, mut server_write) = outbound.into_split();
        let up = tokio::io::copy(&mut client_read, &mut server_write);
        let mut held = state.clone();
        let down = async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // Whatever arrives while frozen waits here (or is dropped with the cut).
                if held.wait_for(|s| *s == ProxyState::Open).await.is_err() {
                    return;
                }
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = up => {}
            _ = down => {}
            _ = state.wait_for(|s| *s == ProxyState::Cut) => {}
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    fn set(&self, state: ProxyState) {
        self.state.send_replace(state);
    }
}

/// lapin fails the confirm of every publish still outstanding when the
/// connection dies, at once (not after `Broker::confirmed`'s own timeout),
/// although the broker may well have the message: such a publish counts as
/// failed and is retried, so it can be delivered twice, never lost.
#[tokio::test]
async fn confirms_outstanding_when_the_connection_dies_fail_at_once() {
    init_logs();
    let topology = scratch_topology();
    let cancel = CancellationToken::new();
    let proxy = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let broker = Broker::start(
        SecretString::from(proxy.url()),
        topology.clone(),
        "test-outstanding",
        cancel.clone(),
    );
    assert!(broker.wait_connected(Duration::from_secs(20)).await, "never connected");

    // Confirms can no longer reach the client; the messages still reach the broker.
    proxy.set(ProxyState::Frozen);
    const N: u32 = 50;
    let mut confirms = Vec::new();
    for i in 0..N {
        let properties = lapin::BasicProperties::default().with_message_id(format!("outstanding-{i}").into());
        let confirm = broker
            .start_publish(&topology.exchange(), routing::OTP_REQUESTED, b"{}", properties)
            .await
            .expect("publish while connected");
        confirms.push(confirm);
    }
    let inspect = Connection::connect(LOCAL, ConnectionProperties::default())
        .await
        .unwrap();
    let queue = topology.dispatch_queue();
    eventually(
        Duration::from_secs(20),
        "the broker to hold all the messages",
        || async { (message_count(&inspect, &queue).await == N).then_some(()) },
    )
    .await;

    // The broker has acked them all; the client has seen none of it. Cut.
    proxy.set(ProxyState::Cut);
    let cut = Instant::now();
    for (i, confirm) in confirms.into_iter().enumerate() {
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            Broker::confirmed(confirm, routing::OTP_REQUESTED),
        )
        .await
        .unwrap_or_else(|_| panic!("confirm {i} still pending 5 s after the connection died"));
        match outcome {
            Err(PublishError::Amqp(_)) => {}
            other => panic!("confirm {i}: expected a connection error, got {other:?}"),
        }
    }
    let failed_in = cut.elapsed();
    assert!(failed_in < Duration::from_secs(5), "{failed_in:?}");
    eventually(Duration::from_secs(5), "the broker handle to notice", || async {
        (!broker.is_connected()).then_some(())
    })
    .await;
    // A publish now fails at once too.
    assert!(broker
        .publish_event(routing::OTP_REQUESTED, b"{}", "late")
        .await
        .is_err());
    eprintln!("{N} outstanding confirms failed {failed_in:?} after the cut; the broker holds all {N} messages");

    cancel.cancel();
    broker.wait_closed().await;
    let channel = inspect.create_channel().await.unwrap();
    topology.delete(&channel).await.unwrap();
}

/// What the publisher has done so far.
#[derive(Default)]
struct Published {
    /// Message ids (`<seq>.<attempt>`) the broker confirmed.
    confirmed: Vec<String>,
    /// Message ids whose publish or confirm failed (then retried as the next attempt).
    failed: Vec<String>,
    /// Logical messages (`seq`) started.
    started: u64,
    errors: HashMap<String, usize>,
}

/// Publishes logical messages in pipelined batches of 20 until `stop`, each
/// failed attempt retried as a new attempt (as the outbox does), and then
/// until every logical message is confirmed.
async fn publish_until_stopped(broker: Broker, published: Arc<Mutex<Published>>, stop: CancellationToken) {
    let mut retry: Vec<(u64, u32)> = Vec::new();
    let mut next_seq = 0u64;
    loop {
        let mut batch: Vec<(u64, u32)> = std::mem::take(&mut retry);
        while batch.len() < 20 && !stop.is_cancelled() {
            batch.push((next_seq, 0));
            next_seq += 1;
        }
        if batch.is_empty() {
            return;
        }
        published.lock().unwrap().started = next_seq;
        let mut pending = Vec::new();
        for (seq, attempt) in batch {
            let id = format!("{seq}.{attempt}");
            let properties = lapin::BasicProperties::default().with_message_id(id.as_str().into());
            let started = broker
                .start_publish(
                    &broker.topology().exchange(),
                    routing::OTP_REQUESTED,
                    id.as_bytes(),
                    properties,
                )
                .await;
            pending.push((seq, attempt, id, started));
        }
        let mut failures = 0;
        for (seq, attempt, id, started) in pending {
            let outcome = match started {
                // As the outbox does: `confirm` also replaces a channel that nacks.
                Ok(confirm) => broker.confirm(confirm, routing::OTP_REQUESTED).await,
                Err(error) => Err(error),
            };
            let mut published = published.lock().unwrap();
            match outcome {
                Ok(()) => published.confirmed.push(id),
                Err(error) => {
                    let kind = format!("{error}");
                    let kind = kind.split(':').next().unwrap_or_default().to_owned();
                    *published.errors.entry(kind).or_default() += 1;
                    published.failed.push(id);
                    retry.push((seq, attempt + 1));
                    failures += 1;
                }
            }
        }
        if failures > 0 {
            {
                let published = published.lock().unwrap();
                eprintln!(
                    "publisher: {failures} of the batch failed, {} confirmed so far, errors {:?}",
                    published.confirmed.len(),
                    published.errors
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A process given all three nodes, connected to node 1, keeps publishing
/// with confirms when node 1 is SIGKILLed: it moves to node 2 (the next in
/// the list) within a deadline, and every confirmed publish is on the
/// quorum queue exactly once. A retry parked into a delay tier declared
/// through node 1 still comes back once node 1 is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_survives_the_loss_of_a_cluster_node() {
    init_logs();
    let t0 = Instant::now();
    let cluster = Cluster::start();
    eprintln!("cluster started in {:?}: {:?}", cluster.started_in, cluster.nodes);
    let (node1, node2) = (cluster.node(1).clone(), cluster.node(2).clone());

    let topology = scratch_topology();
    let queue = topology.dispatch_queue();
    let cancel = CancellationToken::new();
    let broker = Broker::start(
        SecretString::from(cluster.amqp_url()),
        topology.clone(),
        "test-failover",
        cancel.clone(),
    );
    assert!(broker.wait_connected(Duration::from_secs(30)).await, "never connected");
    assert_eq!(
        broker.connected_node(),
        Some(node1.addr()),
        "the first node that answers"
    );
    eprintln!("phase: connected to node 1 at {:?}", t0.elapsed());

    // The work queue, declared through node 1, is replicated on every node.
    let mut all: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    all.sort();
    assert_eq!(cluster.queue_members(2, &queue).await, all);
    eprintln!("phase: members checked at {:?}", t0.elapsed());
    // A delay tier, declared through node 1 as every worker does at start.
    let delays = DelayQueues::new(queue.clone(), &[Duration::from_secs(3)]);
    delays.declare(&broker).await.expect("the delay tier");

    let published = Arc::new(Mutex::new(Published::default()));
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(publish_until_stopped(broker.clone(), published.clone(), stop.clone()));
    let confirmed = || published.lock().unwrap().confirmed.len();
    eventually(
        Duration::from_secs(30),
        "200 confirmed publishes through node 1",
        || async { (confirmed() >= 200).then_some(()) },
    )
    .await;

    cluster.kill(1).await;
    let killed = Instant::now();
    eprintln!("phase: node 1 killed at {:?}", t0.elapsed());
    let before = confirmed();
    let moved_to = eventually(Duration::from_secs(30), "a connection to another node", || async {
        broker.connected_node().filter(|node| *node != node1.addr())
    })
    .await;
    let reconnected_in = killed.elapsed();
    assert_eq!(moved_to, node2.addr(), "the node after the lost one");
    eventually(Duration::from_secs(30), "200 more confirmed publishes", || async {
        (confirmed() >= before + 200).then_some(())
    })
    .await;
    let flowing_in = killed.elapsed();

    eprintln!("phase: stopping the publisher at {:?} after the kill", killed.elapsed());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publisher retried its last failures in time")
        .unwrap();

    eprintln!("phase: publisher done at {:?} after the kill", killed.elapsed());
    // Everything that reached the queue, read through node 2.
    let inspect = Connection::connect(&node2.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ids = drain_ids(&inspect, &queue).await;
    eprintln!("phase: drained at {:?} after the kill", killed.elapsed());
    let published = std::mem::take(&mut *published.lock().unwrap());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published once, delivered more than once: {twice:?}");
    let missing: Vec<_> = published
        .confirmed
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "confirmed but not on the queue: {missing:?}");
    let attempts: HashSet<&str> = published
        .confirmed
        .iter()
        .chain(&published.failed)
        .map(String::as_str)
        .collect();
    let strangers: Vec<_> = ids.iter().filter(|id| !attempts.contains(id.as_str())).collect();
    assert!(strangers.is_empty(), "never published: {strangers:?}");
    // Every logical message was eventually confirmed (the retries' job).
    let done: HashSet<u64> = published
        .confirmed
        .iter()
        .map(|id| id.split('.').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        done.len() as u64,
        published.started,
        "a logical message never confirmed"
    );
    let failed_landed = published
        .failed
        .iter()
        .filter(|id| seen.contains_key(id.as_str()))
        .count();
    eprintln!(
        "node 1 killed: moved to {moved_to} in {reconnected_in:?}, 200 more confirmed after {flowing_in:?}; \
         {} confirmed, {} failed attempts ({:?}), of which {failed_landed} reached the queue anyway; \
         {} messages on the queue",
        published.confirmed.len(),
        published.failed.len(),
        published.errors,
        ids.len(),
    );

    // A retry parked with node 1 gone waits in its tier and comes back to
    // the work queue after its own expiration (shorter than the tier's TTL).
    let parking = Instant::now();
    let properties = lapin::BasicProperties::default().with_message_id("parked".into());
    delays
        .park(&broker, b"parked", properties, Duration::from_millis(500))
        .await
        .expect("a retry parked while node 1 is down");
    let back = eventually(
        Duration::from_secs(10),
        "the parked message back on the work queue",
        || async {
            let ids = drain_ids(&inspect, &queue).await;
            (!ids.is_empty()).then_some(ids)
        },
    )
    .await;
    assert_eq!(back, ["parked"]);
    let waited = parking.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "back after {waited:?}: the tier's TTL, not the message's"
    );
    eprintln!("parked with node 1 down, back on the work queue after {waited:?}");

    cancel.cancel();
    broker.wait_closed().await;
    // No queue deletion: it waits on the dead node's replicas (seconds per
    // queue), and the whole cluster goes with the directory anyway.
    let stopping = Instant::now();
    drop(cluster);
    eprintln!("cluster stopped in {:?}", stopping.elapsed());
}
