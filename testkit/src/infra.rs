//! Every integration test gets its own PostgreSQL database and its own
//! RabbitMQ namespace on the machine's real servers, so tests run in
//! parallel without seeing each other; plus polling with a deadline, and a
//! TCP proxy that can play a dead broker.

use lapin::options::BasicGetOptions;
use lapin::{Connection, ConnectionProperties};
use rand::Rng;
use shared::amqp::Topology;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The server tests create their databases on (`TEST_DATABASE_URL`, without a
/// database name), default `postgres://postgres@127.0.0.1:5432`.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// RabbitMQ for tests (`TEST_AMQP_URL`), default the machine's local broker.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn random_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..8).map(|_| char::from(b'a' + rng.gen_range(0..26u8))).collect()
}

/// A fresh, migrated database, named `otp_test_<unix seconds>_<random>`. Tests
/// leave them behind: `DROP DATABASE` forces a checkpoint that stalls every
/// other test's commits for seconds, so `.ci/run` (or `bash .ci/drop-test-databases`)
/// drops them when no test is running.
pub async fn database() -> (String, PgPool) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/postgres", server_url()))
        .await
        .expect("PostgreSQL must be running for the tests (see README)");
    let now = chrono::Utc::now().timestamp();
    let name = format!("otp_test_{now}_{}", random_suffix());
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .expect("create test database");
    let url = format!("{}/{name}", server_url());
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await
        .expect("connect to test database");
    shared::db::MIGRATOR.run(&pool).await.expect("migrate test database");
    (url, pool)
}

/// A private namespace of exchanges and queues that expire when unused.
pub fn topology() -> Topology {
    Topology::new(format!("test.{}.", random_suffix())).with_queue_expiry(Duration::from_secs(600))
}

/// A plain connection for inspecting queues.
pub async fn amqp() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ must be running for the tests (see README)")
}

/// Takes every message now in `queue` (acking them).
pub async fn drain(connection: &Connection, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let channel = connection.create_channel().await.expect("channel");
    let mut messages = Vec::new();
    while let Ok(Some(message)) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await {
        messages.push(message);
    }
    let _ = channel.close(200, "drained".into()).await;
    messages
}

/// Messages ready in `queue` now (`None`: the queue is not declared).
pub async fn ready_in(connection: &Connection, queue: &str) -> Option<u32> {
    let channel = connection.create_channel().await.expect("a channel");
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await;
    let _ = channel.close(200, "counted".into()).await;
    declared.ok().map(|q| q.message_count())
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A TCP proxy in front of a real server that a test can switch off and on:
/// off, it drops every open connection and refuses new ones, as a dead
/// broker would.
pub struct Proxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, up: bool) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (sender, receiver) = watch::channel(up);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*receiver.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut state = receiver.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Arc::new(Self { addr, up: sender })
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Deletes a namespace's work queues, dead-letter queues and the delay
/// tiers of `schedule` (tests whose binaries declare queues without the
/// test expiry clean up after themselves).
pub async fn delete_namespace(topology: &Topology, schedule: &[Duration]) {
    let connection = amqp().await;
    let channel = connection.create_channel().await.expect("a channel");
    topology.delete(&channel).await.ok();
    let queues = shared::amqp::retry::DelayQueues::new(topology.dispatch_queue(), schedule);
    let webhooks = shared::amqp::retry::DelayQueues::new(topology.webhook_queue(), schedule);
    for (queue, tiers) in [(&queues, queues.tiers()), (&webhooks, webhooks.tiers())] {
        for tier in tiers {
            let name = Topology::retry_queue(queue.queue(), *tier);
            channel
                .queue_delete(name.as_str().into(), Default::default())
                .await
                .ok();
        }
    }
    let _ = connection.close(200, "cleaned".into()).await;
}
