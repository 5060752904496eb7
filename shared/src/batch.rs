//! Group commit for per-message statements. Under a burst every message of a
//! worker needs the same few reads and conditional writes; one statement each
//! costs PostgreSQL a round trip, a plan and (for writes) a commit per
//! message. A [`Batcher`] takes the requests that arrive while its previous
//! batch runs and hands them to one statement (and one commit). Each caller
//! still waits for its own row, so nothing is acknowledged before its write
//! is durable.
//!
//! The mechanism knows nothing of what it runs: the statement is a closure
//! from (keys, values) to the rows it touched.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most requests in one statement.
const MAX_BATCH: usize = 512;
/// How long a batch under load waits for more requests.
const LINGER: Duration = Duration::from_millis(3);

/// Why a batched request has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The statement failed; every request of its batch gets the cause.
    #[error("batched statement failed")]
    Statement(#[source] Arc<sqlx::Error>),
    /// The batcher stopped (the process is shutting down).
    #[error("the batch runner stopped")]
    Stopped,
}

/// A batched store's error: its statement failed, or its batcher did (the
/// workers' stores both answer with it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

type Reply<R> = oneshot::Sender<Result<Option<R>, BatchError>>;

/// What the callers after the first get when one key is submitted twice in
/// a batch (a duplicate delivery).
#[derive(Clone, Copy, Debug)]
pub enum Duplicates {
    /// The same answer (reads).
    Share,
    /// Nothing: only the first may win a conditional write.
    FirstWins,
}

/// Runs one statement for many keys at once; answers, per key, with the row
/// the statement returned for it (`None`: it returned none).
pub struct Batcher<K, T, R> {
    sender: mpsc::Sender<(K, T, Reply<R>)>,
}

impl<K, T, R> Batcher<K, T, R>
where
    K: Ord + Hash + Clone + Send + 'static,
    T: Send + 'static,
    R: Clone + Send + 'static,
{
    /// `run` gets distinct keys (sorted, so concurrent batches lock rows in
    /// one order) with their values, and returns (key, row) for the rows it
    /// touched.
    pub fn start<F, Fut>(duplicates: Duplicates, run: F) -> Self
    where
        F: Fn(Vec<K>, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<(K, R)>, sqlx::Error>> + Send + 'static,
    {
        Self::start_with(1, duplicates, run)
    }

    /// Like `start`, with `runners` batches in flight at once (each on its
    /// own connection): while one waits for its commit, the next gathers.
    /// Only for statements whose concurrent batches cannot conflict (keys
    /// are distinct within a batch, not across batches).
    pub fn start_with<F, Fut>(runners: usize, duplicates: Duplicates, run: F) -> Self
    where
        F: Fn(Vec<K>, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<(K, R)>, sqlx::Error>> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel::<(K, T, Reply<R>)>(MAX_BATCH * 4);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let run = Arc::new(run);
        for _ in 0..runners.max(1) {
            tokio::spawn(run_batches(receiver.clone(), duplicates, run.clone()));
        }
        Self { sender }
    }

    /// Queues one key and waits until its batch has run (for a write: is committed).
    pub async fn submit(&self, key: K, value: T) -> Result<Option<R>, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((key, value, reply))
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

type Queue<K, T, R> = Arc<tokio::sync::Mutex<mpsc::Receiver<(K, T, Reply<R>)>>>;

async fn run_batches<K, T, R, F, Fut>(queue: Queue<K, T, R>, duplicates: Duplicates, run: Arc<F>)
where
    K: Ord + Hash + Clone,
    R: Clone,
    F: Fn(Vec<K>, Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<(K, R)>, sqlx::Error>>,
{
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut receiver = queue.lock().await;
            if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            linger(&mut receiver, &mut batch).await;
        }
        let (keys, values, replies) = distinct(&mut batch);
        match run(keys.clone(), values).await {
            Ok(rows) => answer(keys, replies, rows, duplicates),
            Err(error) => {
                let error = BatchError::Statement(Arc::new(error));
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Under load (more than one request waiting), gathers a little longer: a
/// few milliseconds buy far fewer statements and commits. A request that
/// comes alone goes at once.
async fn linger<M>(receiver: &mut mpsc::Receiver<M>, batch: &mut Vec<M>) {
    if batch.len() <= 1 {
        return;
    }
    let until = tokio::time::Instant::now() + LINGER;
    while batch.len() < MAX_BATCH {
        let room = MAX_BATCH - batch.len();
        match tokio::time::timeout_at(until, receiver.recv_many(batch, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Sorts the batch by key and folds duplicate keys into one entry with
/// several replies (the first value wins).
fn distinct<K: Ord + Clone, T, R>(batch: &mut Vec<(K, T, Reply<R>)>) -> (Vec<K>, Vec<T>, Vec<Vec<Reply<R>>>) {
    batch.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keys: Vec<K> = Vec::with_capacity(batch.len());
    let mut values = Vec::with_capacity(batch.len());
    let mut replies: Vec<Vec<Reply<R>>> = Vec::with_capacity(batch.len());
    for (key, value, reply) in batch.drain(..) {
        match replies.last_mut() {
            Some(same) if keys.last() == Some(&key) => same.push(reply),
            _ => {
                keys.push(key);
                values.push(value);
                replies.push(vec![reply]);
            }
        }
    }
    (keys, values, replies)
}

fn answer<K: Hash + Eq, R: Clone>(
    keys: Vec<K>,
    replies: Vec<Vec<Reply<R>>>,
    rows: Vec<(K, R)>,
    duplicates: Duplicates,
) {
    let mut rows: HashMap<K, R> = rows.into_iter().collect();
    for (key, replies) in keys.iter().zip(replies) {
        let row = rows.remove(key);
        for (n, reply) in replies.into_iter().enumerate() {
            let answer = match duplicates {
                Duplicates::FirstWins if n > 0 => None,
                _ => row.clone(),
            };
            let _ = reply.send(Ok(answer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_statements_and_each_gets_its_own_row() {
        let statements = Arc::new(AtomicUsize::new(0));
        let counted = statements.clone();
        let batcher = Arc::new(Batcher::start(
            Duplicates::Share,
            move |keys: Vec<u32>, values: Vec<u32>| {
                counted.fetch_add(1, Ordering::Relaxed);
                async move { Ok(keys.into_iter().zip(values).filter(|(k, _)| k % 7 != 0).collect()) }
            },
        ));
        let calls = (1..=200u32).map(|n| {
            let batcher = batcher.clone();
            tokio::spawn(async move { (n, batcher.submit(n, n * 10).await.unwrap()) })
        });
        for call in futures_util::future::join_all(calls).await {
            let (n, row) = call.unwrap();
            assert_eq!(row, (n % 7 != 0).then_some(n * 10));
        }
        assert!(statements.load(Ordering::Relaxed) < 200, "requests were batched");
    }

    #[tokio::test]
    async fn a_duplicate_key_wins_a_write_once_and_shares_a_read() {
        let write = Arc::new(Batcher::start(
            Duplicates::FirstWins,
            |keys: Vec<u8>, _: Vec<()>| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(keys.into_iter().map(|k| (k, ())).collect())
            },
        ));
        let first = tokio::spawn({
            let write = write.clone();
            async move { write.submit(9, ()).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (a, b) = tokio::join!(write.submit(1, ()), write.submit(1, ()));
        assert!(first.await.unwrap().is_some());
        assert_eq!(
            [a.unwrap(), b.unwrap()].iter().filter(|r| r.is_some()).count(),
            1,
            "only one of two duplicates wins"
        );
    }

    #[tokio::test]
    async fn a_failed_statement_keeps_its_cause_for_every_caller() {
        let batcher = Batcher::start(Duplicates::Share, |_: Vec<u8>, _: Vec<()>| async {
            Err::<Vec<(u8, ())>, _>(sqlx::Error::PoolTimedOut)
        });
        let error = batcher.submit(1, ()).await.unwrap_err();
        let BatchError::Statement(cause) = &error else {
            panic!("expected the statement's error, got {error:?}");
        };
        assert!(matches!(**cause, sqlx::Error::PoolTimedOut));
        assert!(std::error::Error::source(&error).is_some());
    }
}
