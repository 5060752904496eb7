//! Per-endpoint fairness: at most `per_host` requests in flight to one
//! host:port. A delivery to a busy host that is still answering waits a
//! little for a slot; one to a host that has not answered for a while is not
//! held at all (the caller defers it to a delay tier), so a slow or dead
//! endpoint cannot take the worker's prefetch away from healthy ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A saturated host that has finished no request for this long is stalled.
const STALLED_AFTER: Duration = Duration::from_secs(1);
/// Past this many hosts, idle ones are forgotten.
const MAX_TRACKED_HOSTS: usize = 10_000;

pub struct HostLimiter {
    per_host: usize,
    wait: Duration,
    stalled_after: Duration,
    epoch: Instant,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

struct Host {
    slots: Arc<Semaphore>,
    /// Milliseconds since `epoch` when a request to this host last finished.
    last_release: AtomicU64,
    /// Milliseconds since `epoch` when its last free slot was taken.
    saturated_at: AtomicU64,
}

impl Host {
    /// Saturated, and nothing finished since it became so for `after`.
    fn stalled(&self, now: u64, after: Duration) -> bool {
        let progress = self
            .last_release
            .load(Ordering::Relaxed)
            .max(self.saturated_at.load(Ordering::Relaxed));
        Duration::from_millis(now.saturating_sub(progress)) >= after
    }
}

/// A slot for one request to a host; freed on drop.
pub struct HostPermit {
    _permit: OwnedSemaphorePermit,
    host: Arc<Host>,
    epoch: Instant,
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        self.host
            .last_release
            .store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl HostLimiter {
    pub fn new(per_host: usize, wait: Duration) -> Self {
        Self {
            per_host: per_host.max(1),
            wait,
            stalled_after: STALLED_AFTER,
            epoch: Instant::now(),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn host(&self, key: &str) -> Arc<Host> {
        // A poisoned lock only means another task panicked mid-insert; the map is still usable.
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(host) = hosts.get(key) {
            return host.clone();
        }
        if hosts.len() >= MAX_TRACKED_HOSTS {
            let per_host = self.per_host;
            hosts.retain(|_, host| host.slots.available_permits() < per_host);
        }
        let now = millis_since(self.epoch);
        let host = Arc::new(Host {
            slots: Arc::new(Semaphore::new(self.per_host)),
            last_release: AtomicU64::new(now),
            saturated_at: AtomicU64::new(now),
        });
        hosts.insert(key.to_owned(), host.clone());
        host
    }

    /// Whether `key` is saturated and has finished nothing for a while: a
    /// delivery to it would only be deferred, so it is deferred before any
    /// work is done for it.
    pub fn stalled(&self, key: &str) -> bool {
        let host = self.host(key);
        host.slots.available_permits() == 0 && host.stalled(millis_since(self.epoch), self.stalled_after)
    }

    /// A slot for `key` (`host:port`), or `None` when the host is saturated
    /// and either stalled or still saturated after the short wait.
    pub async fn acquire(&self, key: &str) -> Option<HostPermit> {
        let host = self.host(key);
        let permit = match host.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if host.slots.available_permits() == 0 {
                    host.saturated_at.store(millis_since(self.epoch), Ordering::Relaxed);
                }
                permit
            }
            Err(_) => {
                if host.stalled(millis_since(self.epoch), self.stalled_after) {
                    return None;
                }
                tokio::time::timeout(self.wait, host.slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        Some(HostPermit {
            _permit: permit,
            host,
            epoch: self.epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_that_finishes_nothing_is_not_waited_for() {
        let mut limiter = HostLimiter::new(1, Duration::from_secs(5));
        limiter.stalled_after = Duration::from_millis(50);
        let _held = limiter.acquire("dead:80").await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let started = std::time::Instant::now();
        assert!(limiter.acquire("dead:80").await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1), "deferred without waiting");
    }

    #[tokio::test]
    async fn a_burst_after_a_quiet_spell_is_waited_for_not_deferred() {
        let mut limiter = HostLimiter::new(1, Duration::from_millis(500));
        limiter.stalled_after = Duration::from_millis(50);
        drop(limiter.acquire("quiet:80").await.unwrap());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let limiter = Arc::new(limiter);
        let held = limiter.acquire("quiet:80").await.unwrap();
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire("quiet:80").await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "the burst's second request got the slot");
    }

    #[tokio::test]
    async fn a_saturated_host_does_not_limit_another() {
        let limiter = HostLimiter::new(2, Duration::from_millis(50));
        let _a = limiter.acquire("slow:443").await.unwrap();
        let _b = limiter.acquire("slow:443").await.unwrap();
        assert!(limiter.acquire("slow:443").await.is_none());
        assert!(limiter.acquire("fast:443").await.is_some());
    }

    #[tokio::test]
    async fn a_busy_host_that_answers_is_waited_for_briefly() {
        let limiter = Arc::new(HostLimiter::new(1, Duration::from_millis(500)));
        let held = limiter.acquire("busy:80").await.unwrap();
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire("busy:80").await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
