//! Per-endpoint fairness: at most `per_host` requests in flight to one
//! host:port. A delivery to a busy host waits for a slot only when its wait
//! is predicted to be short; otherwise it is not held at all (the caller
//! defers it to a delay tier), so a slow or dead endpoint cannot take the
//! worker's prefetch away from healthy ones, and a fast one under a burst
//! is not put off.
//!
//! The prediction: the deliveries already waiting for the host, plus this
//! one, times its current request time, over `per_host` (its slots turn
//! over that fast). The current request time is its usual one (a moving
//! average) or, when longer, how long it has been silent: a host that stops
//! answering is seen slowing down before it is called stalled.
//!
//! Silence is counted on the worker's own clock of progress, the last time
//! a request to *any* host finished, not on the wall clock: a host is
//! silent while others answer. A worker starved of CPU finishes nothing
//! anywhere, and that says nothing against the host it is waiting for; a
//! worker with one dead host and no other traffic holds nobody up by
//! waiting for it (its deliveries give up after the longest wait). A delivery whose predicted wait is longer than `wait` is
//! deferred; one that waits keeps waiting while the host finishes requests,
//! and stops when the host counts as stalled (or after [`MAX_WAIT_FACTOR`]
//! times `wait`, at least [`MAX_STALL`], a bound on a bad prediction).
//!
//! A saturated host is *stalled* when none of its requests has finished for
//! [`STALL_FACTOR`] times its usual request time, within
//! [`MIN_STALL`]..[`MAX_STALL`]. A receiver that answers in 2 ms and then
//! finishes nothing for 500 ms has stopped; one that takes 400 ms per
//! request is given 2 s. The floor is not lower because a worker on a
//! saturated machine can itself go 200 ms without running a task: at
//! 200 ms, the bench's two-worker run saw a healthy receiver taken for
//! stalled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A saturated host is stalled after this many of its usual request times without a finished request...
const STALL_FACTOR: u64 = 8;
/// ...but never sooner than this (a host with no history is judged by it)...
const MIN_STALL: Duration = Duration::from_millis(500);
/// ...nor later than this.
const MAX_STALL: Duration = Duration::from_secs(2);
/// A delivery that was let wait gives up after this many times the wait it was allowed.
const MAX_WAIT_FACTOR: u32 = 4;
/// Past this many hosts, idle ones are forgotten.
const MAX_TRACKED_HOSTS: usize = 10_000;

pub struct HostLimiter {
    per_host: usize,
    wait: Duration,
    min_stall: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` when a request to any host last finished.
    witness: Arc<AtomicU64>,
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
    /// Deliveries waiting for one of its slots.
    waiting: AtomicUsize,
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

    /// How long it has finished nothing while other hosts did, up to
    /// `witness` (the last time any request finished).
    fn silence(&self, witness: u64) -> Duration {
        Duration::from_millis(witness.saturating_sub(self.progress()))
    }

    /// Whether, saturated, it has been silent for too long.
    fn silent_too_long(&self, witness: u64, min: Duration) -> bool {
        self.silence(witness) >= self.stall_after(min)
    }

    /// How long a delivery that joins the wait now is expected to wait, with
    /// `per_host` slots: the waiting ones and it, times its current request
    /// time (the usual one, or its silence when longer).
    fn predicted_wait(&self, witness: u64, per_host: usize) -> Duration {
        let usual = Duration::from_micros(self.usual_micros.load(Ordering::Relaxed));
        let silent = self.silence(witness);
        let ahead = u32::try_from(self.waiting.load(Ordering::Relaxed).saturating_add(1)).unwrap_or(u32::MAX);
        usual.max(silent).saturating_mul(ahead) / u32::try_from(per_host).unwrap_or(u32::MAX).max(1)
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
    witness: Arc<AtomicU64>,
    epoch: Instant,
    taken: Instant,
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        self.host.observe(self.taken.elapsed());
        let now = millis_since(self.epoch);
        self.host.last_release.store(now, Ordering::Relaxed);
        self.witness.fetch_max(now, Ordering::Relaxed);
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
            witness: Arc::new(AtomicU64::new(0)),
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
            waiting: AtomicUsize::new(0),
        });
        hosts.insert(key.to_owned(), host.clone());
        host
    }

    /// Whether a delivery to `key` would be let wait for (or get) a slot
    /// now; one that would not is deferred before any work is done for it.
    /// A host never asked for admits (and is not tracked by asking).
    pub fn admits(&self, key: &str) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts.get(key).is_none_or(|host| self.admits_host(host))
    }

    fn admits_host(&self, host: &Host) -> bool {
        if host.slots.available_permits() > 0 {
            return true;
        }
        let witness = self.witness.load(Ordering::Relaxed);
        !host.silent_too_long(witness, self.min_stall) && host.predicted_wait(witness, self.per_host) <= self.wait
    }

    fn stalled_host(&self, host: &Host) -> bool {
        host.slots.available_permits() == 0
            && host.silent_too_long(self.witness.load(Ordering::Relaxed), self.min_stall)
    }

    /// Whether `key` is saturated and has finished nothing for a while
    /// that other hosts answered in.
    pub fn stalled(&self, key: &str) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts.get(key).is_some_and(|host| self.stalled_host(host))
    }

    /// A slot for `key` (`host:port`), or `None` when the host is saturated
    /// and either does not admit a wait (stalled, or the wait predicted too
    /// long) or stops making progress while the delivery waits.
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
                if !self.admits_host(&host) {
                    return None;
                }
                host.waiting.fetch_add(1, Ordering::Relaxed);
                let permit = self.wait_for_slot(&host).await;
                host.waiting.fetch_sub(1, Ordering::Relaxed);
                permit?
            }
        };
        Some(HostPermit {
            _permit: permit,
            host,
            witness: self.witness.clone(),
            epoch: self.epoch,
            taken: Instant::now(),
        })
    }

    /// Waits for a slot while the host keeps finishing requests; `None` once
    /// it counts as stalled, or after the longest wait a delivery is allowed.
    async fn wait_for_slot(&self, host: &Host) -> Option<OwnedSemaphorePermit> {
        let longest = (self.wait * MAX_WAIT_FACTOR).max(MAX_STALL);
        // Stalling is judged on the worker's progress, not on a timer: look again this often.
        let every = (self.min_stall / 5).max(Duration::from_millis(1));
        let started = Instant::now();
        let acquiring = host.slots.clone().acquire_owned();
        tokio::pin!(acquiring);
        loop {
            let left = longest.saturating_sub(started.elapsed());
            if left.is_zero() || self.stalled_host(host) {
                return None;
            }
            if let Ok(permit) = tokio::time::timeout(left.min(every), &mut acquiring).await {
                return permit.ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to another host that finishes now: the worker makes progress.
    async fn progress_elsewhere(limiter: &HostLimiter) {
        drop(limiter.acquire("alive:80").await.unwrap());
    }

    #[tokio::test]
    async fn a_host_that_finishes_nothing_is_not_waited_for() {
        let mut limiter = HostLimiter::new(1, Duration::from_secs(5));
        limiter.min_stall = Duration::from_millis(50);
        let _held = limiter.acquire("dead:80").await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        progress_elsewhere(&limiter).await;
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
        let mut limiter = HostLimiter::new(2, Duration::from_millis(50));
        limiter.min_stall = Duration::from_millis(50);
        let _a = limiter.acquire("slow:443").await.unwrap();
        let _b = limiter.acquire("slow:443").await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(limiter.acquire("fast:443").await.is_some());
        assert!(limiter.acquire("slow:443").await.is_none());
    }

    #[tokio::test]
    async fn a_host_is_silent_only_while_others_answer() {
        let mut limiter = HostLimiter::new(1, Duration::from_secs(1));
        limiter.min_stall = Duration::from_millis(50);
        let _held = limiter.acquire("lone:80").await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        // A starved worker finished nothing anywhere: no evidence against the host.
        assert!(!limiter.stalled("lone:80"));
        assert!(limiter.admits("lone:80"));
        progress_elsewhere(&limiter).await;
        assert!(limiter.stalled("lone:80"));
        assert!(!limiter.admits("lone:80"));
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
        let limiter = Arc::new(limiter);
        let _held = limiter.acquire("dead:80").await.unwrap();
        let ticker = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                loop {
                    progress_elsewhere(&limiter).await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let started = std::time::Instant::now();
        assert!(limiter.acquire("dead:80").await.is_none());
        ticker.abort();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(80), "waited {waited:?}");
        assert!(waited < Duration::from_secs(1), "waited {waited:?}, not the full 5 s");
        assert!(limiter.stalled("dead:80"));
    }

    #[tokio::test]
    async fn a_fast_hosts_queue_is_waited_for_and_a_slow_hosts_is_not() {
        let limiter = HostLimiter::new(1, Duration::from_millis(500));
        let fast = limiter.host("fast:80");
        let slow = limiter.host("slow:80");
        for _ in 0..20 {
            fast.observe(Duration::from_millis(2));
            slow.observe(Duration::from_millis(400));
        }
        let _fast = limiter.acquire("fast:80").await.unwrap();
        let _slow = limiter.acquire("slow:80").await.unwrap();
        // Ten ahead at 2 ms each: 22 ms to wait.
        fast.waiting.store(10, Ordering::Relaxed);
        assert!(limiter.admits("fast:80"));
        // One ahead at 400 ms: 800 ms.
        slow.waiting.store(1, Ordering::Relaxed);
        assert!(!limiter.admits("slow:80"));
        let started = std::time::Instant::now();
        assert!(limiter.acquire("slow:80").await.is_none());
        assert!(started.elapsed() < Duration::from_millis(400), "not waited for");
    }

    #[tokio::test]
    async fn a_silent_host_takes_fewer_waiters_the_longer_it_is_silent() {
        let mut limiter = HostLimiter::new(1, Duration::from_millis(400));
        limiter.min_stall = Duration::from_secs(5);
        let _held = limiter.acquire("quiet:80").await.unwrap();
        let host = limiter.host("quiet:80");
        host.waiting.store(3, Ordering::Relaxed);
        assert!(limiter.admits("quiet:80"), "just saturated: a short wait");
        tokio::time::sleep(Duration::from_millis(150)).await;
        progress_elsewhere(&limiter).await;
        assert!(!limiter.admits("quiet:80"), "four behind a host silent for 150 ms");
        host.waiting.store(0, Ordering::Relaxed);
        assert!(limiter.admits("quiet:80"), "the first behind it may still wait");
    }

    #[tokio::test]
    async fn a_waiter_behind_others_keeps_waiting_while_the_host_answers() {
        let mut limiter = HostLimiter::new(1, Duration::from_secs(1));
        limiter.min_stall = Duration::from_millis(150);
        let limiter = Arc::new(limiter);
        let held = limiter.acquire("busy:80").await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let limiter = limiter.clone();
            waiters.push(tokio::spawn(async move {
                let permit = limiter.acquire("busy:80").await?;
                tokio::time::sleep(Duration::from_millis(80)).await;
                drop(permit);
                Some(())
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        drop(held);
        // The last one waits about 240 ms, longer than the stall floor, but
        // the host finished a request every 80 ms meanwhile.
        for waiter in waiters {
            assert!(
                waiter.await.unwrap().is_some(),
                "a waiter gave up on a host that answers"
            );
        }
    }
}
