//! Per-endpoint fairness: at most `per_host` requests in flight to one
//! host:port. A delivery to a busy host that is still answering waits a
//! little for a slot; one to a host that has not answered for a while is not
//! held at all (the caller defers it to a delay tier), so a slow or dead
//! endpoint cannot take the worker's prefetch away from healthy ones.
//!
//! "A while" follows the host: a saturated host is stalled when none of its
//! requests has finished for [`STALL_FACTOR`] times its usual request time,
//! within [`MIN_STALL`]..[`MAX_STALL`]. A receiver that answers in 2 ms and
//! then finishes nothing for 500 ms has stopped; one that takes 400 ms per
//! request is given 2 s. The sooner a dead host is seen, the fewer
//! deliveries hold a prefetch slot waiting for it. The floor is not lower
//! because a worker on a saturated machine can itself go 200 ms without
//! running a task: at 200 ms, the bench's two-worker run saw a healthy
//! receiver taken for stalled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A saturated host is stalled after this many of its usual request times without a finished request...
const STALL_FACTOR: u64 = 8;
/// ...but never sooner than this (a host with no history is judged by it)...
const MIN_STALL: Duration = Duration::from_millis(500);
/// ...nor later than this.
const MAX_STALL: Duration = Duration::from_secs(2);
/// Past this many hosts, idle ones are forgotten.
const MAX_TRACKED_HOSTS: usize = 10_000;

pub struct HostLimiter {
    per_host: usize,
    wait: Duration,
    min_stall: Duration,
    epoch: Instant,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

struct Host {
    slots: Arc<Semaphore>,
    /// Milliseconds since `epoch` when a request to this host last finished.
    last_release: AtomicU64,
    /// Milliseconds since `epoch` when its last free slot was taken.
    saturated_at: AtomicU64,
    /// Moving average of its request times, in microseconds (0: none yet).
    usual_micros: AtomicU64,
}

impl Host {
    /// Milliseconds since `epoch` of its last sign of life.
    fn progress(&self) -> u64 {
        self.last_release
            .load(Ordering::Relaxed)
            .max(self.saturated_at.load(Ordering::Relaxed))
    }

    /// How long it may finish nothing while saturated before it is stalled.
    fn stall_after(&self, min: Duration) -> Duration {
        let usual = Duration::from_micros(self.usual_micros.load(Ordering::Relaxed));
        (usual * STALL_FACTOR as u32).clamp(min, MAX_STALL.max(min))
    }

    /// Milliseconds since `epoch` at which, finishing nothing, it is stalled.
    fn stalls_at(&self, min: Duration) -> u64 {
        let after = u64::try_from(self.stall_after(min).as_millis()).unwrap_or(u64::MAX);
        self.progress().saturating_add(after)
    }

    /// Folds one request time into the average (weight 1/8).
    fn observe(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        // Racing updates may drop a sample; the average stays an average.
        let old = self.usual_micros.load(Ordering::Relaxed);
        let new = if old == 0 { took } else { old - old / 8 + took / 8 };
        self.usual_micros.store(new, Ordering::Relaxed);
    }
}

/// A slot for one request to a host; freed on drop.
pub struct HostPermit {
    _permit: OwnedSemaphorePermit,
    host: Arc<Host>,
    epoch: Instant,
    taken: Instant,
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        self.host.observe(self.taken.elapsed());
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
            min_stall: MIN_STALL,
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
            usual_micros: AtomicU64::new(0),
        });
        hosts.insert(key.to_owned(), host.clone());
        host
    }

    /// Whether `key` is saturated and has finished nothing for a while: a
    /// delivery to it would only be deferred, so it is deferred before any
    /// work is done for it.
    /// A host never asked for is not stalled (and is not tracked by asking).
    pub fn stalled(&self, key: &str) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts.get(key).is_some_and(|host| {
            host.slots.available_permits() == 0 && millis_since(self.epoch) >= host.stalls_at(self.min_stall)
        })
    }

    /// A slot for `key` (`host:port`), or `None` when the host is saturated
    /// and either stalled or still saturated after the short wait (which
    /// ends early, when the host would count as stalled).
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
                let now = millis_since(self.epoch);
                let until_stalled = Duration::from_millis(host.stalls_at(self.min_stall).saturating_sub(now));
                let wait = self.wait.min(until_stalled);
                if wait.is_zero() {
                    return None;
                }
                tokio::time::timeout(wait, host.slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        Some(HostPermit {
            _permit: permit,
            host,
            epoch: self.epoch,
            taken: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_that_finishes_nothing_is_not_waited_for() {
        let mut limiter = HostLimiter::new(1, Duration::from_secs(5));
        limiter.min_stall = Duration::from_millis(50);
        let _held = limiter.acquire("dead:80").await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let started = std::time::Instant::now();
        assert!(limiter.acquire("dead:80").await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1), "deferred without waiting");
    }

    #[tokio::test]
    async fn a_burst_after_a_quiet_spell_is_waited_for_not_deferred() {
        let mut limiter = HostLimiter::new(1, Duration::from_millis(500));
        limiter.min_stall = Duration::from_millis(50);
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

    #[tokio::test]
    async fn a_dead_host_is_stalled_sooner_than_a_slow_one() {
        let limiter = HostLimiter::new(1, Duration::from_secs(5));
        for (key, took) in [
            ("fast:80", Duration::from_millis(2)),
            ("slow:80", Duration::from_millis(400)),
        ] {
            let host = limiter.host(key);
            for _ in 0..20 {
                host.observe(took);
            }
        }
        assert_eq!(limiter.host("fast:80").stall_after(MIN_STALL), MIN_STALL);
        assert_eq!(limiter.host("slow:80").stall_after(MIN_STALL), MAX_STALL);
        assert_eq!(limiter.host("new:80").stall_after(MIN_STALL), MIN_STALL);
        let mid = limiter.host("mid:80");
        for _ in 0..40 {
            mid.observe(Duration::from_millis(100));
        }
        let after = mid.stall_after(MIN_STALL);
        assert!(
            after > Duration::from_millis(790) && after <= Duration::from_millis(800),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn a_wait_for_a_slot_ends_when_the_host_counts_as_stalled() {
        let mut limiter = HostLimiter::new(1, Duration::from_secs(5));
        limiter.min_stall = Duration::from_millis(100);
        let _held = limiter.acquire("dead:80").await.unwrap();
        let started = std::time::Instant::now();
        assert!(limiter.acquire("dead:80").await.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(80), "waited {waited:?}");
        assert!(waited < Duration::from_secs(1), "waited {waited:?}, not the full 5 s");
        assert!(limiter.stalled("dead:80"));
    }
}
