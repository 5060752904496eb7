//! The hashing stage. bcrypt is CPU-bound, so it runs on its own threads,
//! one per core by default (`DISPATCH_HASH_CONCURRENCY`), never on the async
//! runtime, which stays free for provider I/O. Each thread takes whatever
//! codes are waiting, up to `OtpHasher::LANES`, and hashes them together:
//! under a burst that costs about a third of hashing them one by one, and a
//! code that arrives alone is hashed at once, without waiting for company.
//! The threads go straight from one batch to the next (no hop through the
//! runtime in between), so under a burst they keep their cores busy.

use shared::otp::{OtpCode, OtpHasher};
use shared::ObjectId;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

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
    pub fn start(hasher: OtpHasher, threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>(4096);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let (queue, hasher) = (queue.clone(), hasher.clone());
            std::thread::Builder::new()
                .name(format!("otp-hash-{n}"))
                .spawn(move || hash_batches(&queue, &hasher))?;
        }
        Ok(Self { jobs })
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

/// One hashing thread: until the stage is dropped, takes up to `LANES`
/// waiting codes and answers each caller with its hash.
fn hash_batches(queue: &Mutex<mpsc::Receiver<Job>>, hasher: &OtpHasher) {
    loop {
        let batch = {
            // One idle thread waits on the queue; the others wait for it to
            // take its batch.
            let Ok(mut queue) = queue.lock() else {
                return;
            };
            let Some(first) = queue.blocking_recv() else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < OtpHasher::LANES {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let codes: Vec<(&str, &OtpCode)> = batch.iter().map(|j| (j.id.as_str(), &j.code)).collect();
        let hashes = hasher.hash_many(&codes);
        for (job, hash) in batch.into_iter().zip(hashes) {
            let _ = job.reply.send(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[tokio::test]
    async fn every_caller_gets_the_hash_of_its_own_code() {
        let hasher = OtpHasher::new(SecretString::from("pepper"), 4);
        let hashing = Arc::new(Hashing::start(hasher.clone(), 2).unwrap());
        let calls = (0..23).map(|_| {
            let hashing = hashing.clone();
            tokio::spawn(async move {
                let id = ObjectId::new();
                let code = shared::otp::CodeDeriver::new(SecretString::from("key")).code(id.as_str(), 6);
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
