//! Group commit for the dispatcher's per-message writes. Under a burst every
//! message needs two durable row updates (claim + hash, then `sent`); doing
//! each in its own transaction makes commit latency the bottleneck. A batcher
//! takes the updates that arrive while the previous batch is being written
//! and writes them as one statement and one commit. Each caller still waits
//! for its own row's outcome, so nothing is acked before it is durable.

use sqlx::PgPool;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most rows in one statement.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
#[error("batched write failed: {0}")]
pub struct BatchError(String);

type Reply = oneshot::Sender<Result<bool, BatchError>>;

/// Writes rows keyed by validation id in batches; answers, per row, whether
/// the conditional update applied to it.
pub struct Batcher<T> {
    sender: mpsc::Sender<(String, T, Reply)>,
}

impl<T: Send + 'static> Batcher<T> {
    /// `run` gets distinct ids (sorted, so concurrent batches lock rows in one
    /// order) with their values, and returns the ids it updated.
    pub fn start<F, Fut>(run: F) -> Self
    where
        F: Fn(Vec<String>, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<String>, sqlx::Error>> + Send,
    {
        let (sender, mut receiver) = mpsc::channel::<(String, T, Reply)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                batch.sort_by(|a, b| a.0.cmp(&b.0));
                let mut ids = Vec::with_capacity(batch.len());
                let mut values = Vec::with_capacity(batch.len());
                let mut replies = Vec::with_capacity(batch.len());
                let mut duplicates = Vec::new();
                for (id, value, reply) in batch.drain(..) {
                    // The same validation twice in one batch (a duplicate
                    // delivery): only the first may win.
                    if ids.last() == Some(&id) {
                        duplicates.push(reply);
                        continue;
                    }
                    ids.push(id);
                    values.push(value);
                    replies.push(reply);
                }
                for reply in duplicates {
                    let _ = reply.send(Ok(false));
                }
                match run(ids.clone(), values).await {
                    Ok(updated) => {
                        let updated: HashSet<String> = updated.into_iter().collect();
                        for (id, reply) in ids.iter().zip(replies) {
                            let _ = reply.send(Ok(updated.contains(id)));
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(BatchError(message.clone())));
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    /// Queues one row's update and waits until it is committed.
    pub async fn submit(&self, id: String, value: T) -> Result<bool, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((id, value, reply))
            .await
            .map_err(|_| BatchError("the batch writer stopped".into()))?;
        answer
            .await
            .map_err(|_| BatchError("the batch writer stopped".into()))?
    }
}

/// The two batched writes of a send.
pub struct Writes {
    /// (validation id, hash): take the send for the lease and store the hash.
    pub claims: Batcher<String>,
    /// (validation id, providerConfirmation JSON): mark it `sent`.
    pub sent: Batcher<String>,
}

impl Writes {
    pub fn start(pool: PgPool, lease: Duration) -> Arc<Self> {
        let claim_pool = pool.clone();
        let claims = Batcher::start(move |ids: Vec<String>, hashes: Vec<String>| {
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
            }
        });
        let sent = Batcher::start(move |ids: Vec<String>, confirmations: Vec<String>| {
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
            }
        });
        Arc::new(Self { claims, sent })
    }
}
