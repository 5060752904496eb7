//! The hashing stage. bcrypt is CPU-bound, so it runs on the blocking pool,
//! on at most `workers` threads at once (the cores by default), and keeps the
//! async runtime free for provider I/O. Each worker takes whatever codes are
//! waiting, up to `OtpHasher::LANES`, and hashes them together: under a burst
//! that costs about a third of hashing them one by one, and a code that
//! arrives alone is hashed at once, without waiting for company.

use shared::otp::{OtpCode, OtpHasher};
use shared::ObjectId;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

struct Job {
    id: String,
    code: OtpCode,
    reply: oneshot::Sender<String>,
}

/// The hashing stage stopped (the process is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the hashing stage stopped")]
pub struct HashingStopped;

pub struct Hashing {
    jobs: mpsc::Sender<Job>,
}

impl Hashing {
    pub fn start(hasher: OtpHasher, workers: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>(4096);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers.max(1) {
            let (queue, hasher) = (queue.clone(), hasher.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::with_capacity(OtpHasher::LANES);
                    // One idle worker waits on the queue at a time; the others
                    // wait for it to take its batch.
                    if queue.lock().await.recv_many(&mut batch, OtpHasher::LANES).await == 0 {
                        return;
                    }
                    let hasher = hasher.clone();
                    let hashed = tokio::task::spawn_blocking(move || {
                        let codes: Vec<(&str, &OtpCode)> = batch.iter().map(|j| (j.id.as_str(), &j.code)).collect();
                        let hashes = hasher.hash_many(&codes);
                        (batch, hashes)
                    })
                    .await;
                    // A failed batch drops its replies: those callers see `HashingStopped`.
                    if let Ok((batch, hashes)) = hashed {
                        for (job, hash) in batch.into_iter().zip(hashes) {
                            let _ = job.reply.send(hash);
                        }
                    }
                }
            });
        }
        Self { jobs }
    }

    /// The `$2b$` hash of `code` for validation `id`.
    pub async fn hash(&self, id: &ObjectId, code: &OtpCode) -> Result<String, HashingStopped> {
        let (reply, hash) = oneshot::channel();
        let job = Job {
            id: id.to_string(),
            code: code.clone(),
            reply,
        };
        self.jobs.send(job).await.map_err(|_| HashingStopped)?;
        hash.await.map_err(|_| HashingStopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[tokio::test]
    async fn every_caller_gets_the_hash_of_its_own_code() {
        let hasher = OtpHasher::new(SecretString::from("pepper"), 4);
        let hashing = Arc::new(Hashing::start(hasher.clone(), 2));
        let calls = (0..23).map(|_| {
            let hashing = hashing.clone();
            tokio::spawn(async move {
                let (id, code) = (ObjectId::new(), OtpCode::generate(6));
                let hash = hashing.hash(&id, &code).await.unwrap();
                (id, code, hash)
            })
        });
        for call in futures_util::future::join_all(calls).await {
            let (id, code, hash) = call.unwrap();
            assert!(hasher.verify(&id.to_string(), &code, &hash));
        }
    }
}
