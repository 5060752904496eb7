//! Batched statements for the dispatcher's per-message reads and writes.
//! Under a burst every message needs one read (the validation) and two
//! durable row updates (claim + hash, then `sent`); one statement each costs
//! PostgreSQL a round trip, a plan and (for writes) a commit per message. A
//! batcher takes the requests that arrive while its previous batch runs and
//! runs them as one statement (and one commit). Each caller still waits for
//! its own row, so nothing is acked before its write is durable.

use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most rows in one statement.
const MAX_BATCH: usize = 512;
/// How long a batch under load waits for more requests.
const LINGER: Duration = Duration::from_millis(3);

#[derive(Debug, thiserror::Error)]
#[error("batched statement failed: {0}")]
pub struct BatchError(String);

type Reply<R> = oneshot::Sender<Result<Option<R>, BatchError>>;

/// What the callers after the first get when one id is submitted twice in
/// a batch (a duplicate delivery).
#[derive(Clone, Copy)]
pub enum Duplicates {
    /// The same answer (reads).
    Share,
    /// Nothing: only the first may win a conditional write.
    FirstWins,
}

/// Runs one statement for many ids at once; answers, per id, with the row
/// the statement returned for it (`None`: it returned none).
pub struct Batcher<T, R> {
    sender: mpsc::Sender<(String, T, Reply<R>)>,
}

impl<T: Send + 'static, R: Clone + Send + 'static> Batcher<T, R> {
    /// `run` gets distinct ids (sorted, so concurrent batches lock rows in one
    /// order) with their values, and returns (id, row) for the rows it touched.
    pub fn start<F, Fut>(duplicates: Duplicates, run: F) -> Self
    where
        F: Fn(Vec<String>, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<(String, R)>, sqlx::Error>> + Send,
    {
        let (sender, mut receiver) = mpsc::channel::<(String, T, Reply<R>)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                // Under load (more than one request waiting), gather a little
                // longer: a few milliseconds buy far fewer statements and
                // commits. A request that comes alone goes at once.
                if batch.len() > 1 {
                    let until = tokio::time::Instant::now() + LINGER;
                    while batch.len() < MAX_BATCH {
                        let room = MAX_BATCH - batch.len();
                        match tokio::time::timeout_at(until, receiver.recv_many(&mut batch, room)).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                }
                batch.sort_by(|a, b| a.0.cmp(&b.0));
                let mut ids = Vec::with_capacity(batch.len());
                let mut values = Vec::with_capacity(batch.len());
                let mut replies: Vec<Vec<Reply<R>>> = Vec::with_capacity(batch.len());
                for (id, value, reply) in batch.drain(..) {
                    match replies.last_mut() {
                        Some(same) if ids.last() == Some(&id) => same.push(reply),
                        _ => {
                            ids.push(id);
                            values.push(value);
                            replies.push(vec![reply]);
                        }
                    }
                }
                match run(ids.clone(), values).await {
                    Ok(rows) => {
                        let mut rows: HashMap<String, R> = rows.into_iter().collect();
                        for (id, replies) in ids.iter().zip(replies) {
                            let row = rows.remove(id);
                            for (n, reply) in replies.into_iter().enumerate() {
                                let answer = match duplicates {
                                    Duplicates::FirstWins if n > 0 => None,
                                    _ => row.clone(),
                                };
                                let _ = reply.send(Ok(answer));
                            }
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        for reply in replies.into_iter().flatten() {
                            let _ = reply.send(Err(BatchError(message.clone())));
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    /// Queues one id and waits until its batch has run (for a write: is committed).
    pub async fn submit(&self, id: String, value: T) -> Result<Option<R>, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((id, value, reply))
            .await
            .map_err(|_| BatchError("the batch runner stopped".into()))?;
        answer
            .await
            .map_err(|_| BatchError("the batch runner stopped".into()))?
    }
}

/// The batched statements of a send.
pub struct Batches {
    /// Validation id → the validation with its flow's sending settings.
    pub loads: Batcher<(), crate::store::Target>,
    /// (validation id, hash): take the send for the lease and store the hash.
    pub claims: Batcher<String, ()>,
    /// (validation id, providerConfirmation JSON): mark it `sent`.
    pub sent: Batcher<String, ()>,
}

impl Batches {
    pub fn start(pool: PgPool, lease: Duration) -> Arc<Self> {
        let load_pool = pool.clone();
        let loads = Batcher::start(Duplicates::Share, move |ids: Vec<String>, _: Vec<()>| {
            crate::store::load_many(load_pool.clone(), ids)
        });
        let claim_pool = pool.clone();
        let claims = Batcher::start(Duplicates::FirstWins, move |ids: Vec<String>, hashes: Vec<String>| {
            let pool = claim_pool.clone();
            async move {
                sqlx::query_scalar(
                    "UPDATE phone_validations AS v
                        SET otp_hash = c.hash, dispatch_lease_until = now() + make_interval(secs => $3),
                            updated_at = now()
                       FROM unnest($1::text[], $2::text[]) AS c(id, hash)
                      WHERE v.id = c.id AND v.status = 'new'
                        AND (v.dispatch_lease_until IS NULL OR v.dispatch_lease_until < now())
                  RETURNING v.id",
                )
                .bind(ids)
                .bind(hashes)
                .bind(lease.as_secs_f64())
                .fetch_all(&pool)
                .await
                .map(updated)
            }
        });
        let sent = Batcher::start(
            Duplicates::FirstWins,
            move |ids: Vec<String>, confirmations: Vec<String>| {
                let pool = pool.clone();
                async move {
                    sqlx::query_scalar(
                        "UPDATE phone_validations AS v
                        SET status = 'sent', provider_confirmation = c.confirmation::jsonb,
                            dispatch_lease_until = NULL, updated_at = now()
                       FROM unnest($1::text[], $2::text[]) AS c(id, confirmation)
                      WHERE v.id = c.id AND v.status = 'new'
                  RETURNING v.id",
                    )
                    .bind(ids)
                    .bind(confirmations)
                    .fetch_all(&pool)
                    .await
                    .map(updated)
                }
            },
        );
        Arc::new(Self { loads, claims, sent })
    }
}

/// A conditional update's answer: the ids it updated.
fn updated(ids: Vec<String>) -> Vec<(String, ())> {
    ids.into_iter().map(|id| (id, ())).collect()
}
