//! Transactional outbox. An event row is written in the transaction that
//! changes the record, so once the transaction commits the event cannot be
//! lost. Two paths then publish it, with publisher confirms:
//!
//! - the fast path: right after commit the row is handed to an in-process
//!   task that publishes it and deletes it (in batches under load);
//! - the sweeper: every `sweep_interval` it takes rows older than
//!   `sweep_after` (`FOR UPDATE SKIP LOCKED`, so API instances share the work)
//!   and publishes them; this is what a broker outage or a crash falls back on.
//!
//! The fast path drops anything older than half of `sweep_after`, so the two
//! never race for the same row and each event is published once.

use crate::amqp::{BasicProperties, Broker, PublishError};
use crate::events::Event;
use futures_util::future::join_all;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ENQUEUE: &str =
    "INSERT INTO outbox (routing_key, message_id, payload) VALUES ($1, $2, $3::text::jsonb) RETURNING id";
/// `created_at` is the insert's own time, not the transaction's start: the
/// sweeper takes rows by age, and a batch's transaction may have run a while.
const ENQUEUE_MANY: &str = "INSERT INTO outbox (routing_key, message_id, payload, created_at)
          SELECT e.routing_key, e.message_id, e.payload::jsonb, clock_timestamp()
            FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(routing_key, message_id, payload, n)
           ORDER BY e.n
       RETURNING id, message_id";
const DELETE_PUBLISHED: &str = "DELETE FROM outbox WHERE id = ANY($1)";
const PENDING: &str = "SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT 100000) AS o";
const SWEEP: &str = "SELECT id, routing_key, message_id, payload FROM outbox
          WHERE created_at < now() - make_interval(secs => $1)
          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED";

/// Rows published per sweep transaction.
const SWEEP_BATCH: i64 = 500;
/// Messages the fast path publishes before awaiting their confirms together.
const FAST_BATCH: usize = 256;

/// An event row, committed or about to be.
#[derive(Clone, Debug)]
pub struct OutboxMessage {
    pub id: i64,
    pub routing_key: String,
    pub message_id: String,
    pub payload: Vec<u8>,
}

/// An event serialized for the outbox, before its row exists. Lets a caller
/// insert the row inside a larger statement (the API's create inserts its
/// validations and their events in one).
pub struct Prepared {
    pub routing_key: &'static str,
    pub message_id: String,
    payload: String,
}

impl Prepared {
    pub fn new<E: Event>(event: &E) -> Result<Self, serde_json::Error> {
        Ok(Self {
            routing_key: event.routing_key(),
            message_id: event.event_id().to_owned(),
            payload: serde_json::to_string(event)?,
        })
    }

    /// The payload as text, for binding (`$n::text::jsonb`).
    pub fn payload_text(&self) -> &str {
        &self.payload
    }

    /// The message once its row has id `id`.
    pub fn into_message(self, id: i64) -> OutboxMessage {
        OutboxMessage {
            id,
            routing_key: self.routing_key.to_owned(),
            message_id: self.message_id,
            payload: self.payload.into_bytes(),
        }
    }
}

/// Writes `event` to the outbox inside the caller's transaction.
pub async fn enqueue<E: Event>(conn: &mut PgConnection, event: &E) -> Result<OutboxMessage, sqlx::Error> {
    let prepared = Prepared::new(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let id: i64 = sqlx::query_scalar(ENQUEUE)
        .bind(prepared.routing_key)
        .bind(&prepared.message_id)
        .bind(prepared.payload_text())
        .fetch_one(conn)
        .await?;
    Ok(prepared.into_message(id))
}

/// Writes `events` to the outbox inside the caller's transaction, with one
/// multi-row statement (the expiry sweep's batch of `failed` events).
pub async fn enqueue_many(conn: &mut PgConnection, events: Vec<Prepared>) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let routing_keys: Vec<&str> = events.iter().map(|e| e.routing_key).collect();
    let message_ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    let payloads: Vec<&str> = events.iter().map(Prepared::payload_text).collect();
    let rows: Vec<(i64, String)> = sqlx::query_as(ENQUEUE_MANY)
        .bind(routing_keys)
        .bind(message_ids)
        .bind(payloads)
        .fetch_all(conn)
        .await?;
    let mut ids: std::collections::HashMap<String, i64> = rows.into_iter().map(|(id, m)| (m, id)).collect();
    Ok(events
        .into_iter()
        .filter_map(|e| {
            let id = ids.remove(&e.message_id)?;
            Some(e.into_message(id))
        })
        .collect())
}

/// When the sweeper runs and what it takes.
#[derive(Clone, Copy, Debug)]
pub struct RelayConfig {
    /// `OUTBOX_SWEEP_INTERVAL_MS`: how often the sweeper looks.
    pub sweep_interval: Duration,
    /// `OUTBOX_SWEEP_AFTER_MS`: rows older than this belong to the sweeper.
    pub sweep_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(1),
            sweep_after: Duration::from_secs(4),
        }
    }
}

struct Pending {
    message: OutboxMessage,
    committed: Instant,
}

/// Hands committed outbox rows to the fast path.
#[derive(Clone)]
pub struct Relay {
    sender: mpsc::Sender<Pending>,
}

impl Relay {
    /// Starts the fast path and the sweeper.
    pub fn start(
        pool: PgPool,
        broker: Broker,
        config: RelayConfig,
        cancel: CancellationToken,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let (sender, receiver) = mpsc::channel(16_384);
        let fast = tokio::spawn(fast_path(
            receiver,
            pool.clone(),
            broker.clone(),
            config,
            cancel.clone(),
        ));
        let sweep = tokio::spawn(sweeper(pool, broker, config, cancel));
        (Self { sender }, vec![fast, sweep])
    }

    /// Publishes soon; never waits. If the fast path is saturated the row
    /// stays for the sweeper.
    pub fn publish_soon(&self, messages: impl IntoIterator<Item = OutboxMessage>) {
        let committed = Instant::now();
        for message in messages {
            if self.sender.try_send(Pending { message, committed }).is_err() {
                metrics::counter!("outbox_fast_path_overflow_total").increment(1);
            }
        }
    }
}

async fn fast_path(
    mut receiver: mpsc::Receiver<Pending>,
    pool: PgPool,
    broker: Broker,
    config: RelayConfig,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(FAST_BATCH);
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => { receiver.close(); receiver.recv_many(&mut batch, FAST_BATCH).await }
            n = receiver.recv_many(&mut batch, FAST_BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let fresh: Vec<OutboxMessage> = batch
            .drain(..)
            .filter(|p| p.committed.elapsed() < config.sweep_after / 2)
            .map(|p| p.message)
            .collect();
        let published = publish_all(&broker, &fresh).await;
        if let Err(error) = delete(&pool, &published).await {
            // The rows stay; the sweeper publishes them again (consumers de-duplicate).
            tracing::warn!(%error, "could not delete published outbox rows");
        }
    }
}

/// Publishes every message (pipelined) and returns the ids the broker confirmed.
async fn publish_all(broker: &Broker, messages: &[OutboxMessage]) -> Vec<i64> {
    let exchange = broker.topology().exchange();
    let mut pending = Vec::with_capacity(messages.len());
    for message in messages {
        let properties = BasicProperties::default().with_message_id(message.message_id.as_str().into());
        match broker
            .start_publish(&exchange, &message.routing_key, &message.payload, properties)
            .await
        {
            Ok(confirm) => pending.push((message, confirm)),
            Err(error) => {
                tracing::debug!(%error, "outbox publish deferred to the sweeper");
                break;
            }
        }
    }
    let results = join_all(
        pending
            .into_iter()
            .map(|(message, confirm)| async move { (message, broker.confirm(confirm, &message.routing_key).await) }),
    )
    .await;
    let mut published = Vec::with_capacity(results.len());
    for (message, result) in results {
        match result {
            Ok(()) => {
                metrics::counter!("events_published_total", "routing_key" => message.routing_key.clone()).increment(1);
                published.push(message.id);
            }
            Err(PublishError::NotConnected) => {}
            Err(error) => tracing::warn!(%error, event_id = %message.message_id, "event not confirmed; will retry"),
        }
    }
    published
}

async fn delete(pool: &PgPool, ids: &[i64]) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        sqlx::query(DELETE_PUBLISHED).bind(ids).execute(pool).await?;
    }
    Ok(())
}

async fn sweeper(pool: PgPool, broker: Broker, config: RelayConfig, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        report_pending(&pool).await;
        if !broker.is_connected() {
            continue;
        }
        loop {
            match sweep_once(&pool, &broker, config.sweep_after).await {
                Ok(n) if n as i64 == SWEEP_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "outbox sweep failed");
                    break;
                }
            }
        }
    }
}

/// `outbox_pending`: events not yet confirmed by RabbitMQ (counted up to
/// 100,000, so a long outage does not make the count itself expensive).
async fn report_pending(pool: &PgPool) {
    let pending: Result<i64, _> = sqlx::query_scalar(PENDING).fetch_one(pool).await;
    if let Ok(pending) = pending {
        metrics::gauge!("outbox_pending").set(pending as f64);
    }
}

/// Publishes one batch of old rows; returns how many were taken.
pub async fn sweep_once(pool: &PgPool, broker: &Broker, older_than: Duration) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, String, String, Json<serde_json::Value>)> = sqlx::query_as(SWEEP)
        .bind(older_than.as_secs_f64())
        .bind(SWEEP_BATCH)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let taken = rows.len();
    let messages: Vec<OutboxMessage> = rows
        .into_iter()
        .map(|(id, routing_key, message_id, Json(payload))| OutboxMessage {
            id,
            routing_key,
            message_id,
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
        })
        .collect();
    let published = publish_all(broker, &messages).await;
    if !published.is_empty() {
        sqlx::query(DELETE_PUBLISHED).bind(&published).execute(&mut *tx).await?;
        tracing::info!(published = published.len(), "outbox sweep published delayed events");
    }
    tx.commit().await?;
    Ok(if published.len() == taken { taken } else { 0 })
}

/// The outbox's statements, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        ("outbox.enqueue", ENQUEUE),
        ("outbox.enqueue_many", ENQUEUE_MANY),
        ("outbox.delete_published", DELETE_PUBLISHED),
        ("outbox.pending", PENDING),
        ("outbox.sweep", SWEEP),
    ]
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .into()
}
