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
//! [`STALL_FACTOR`](host::STALL_FACTOR) times its usual request time, within
//! [`MIN_STALL`]..[`MAX_STALL`]. A receiver that answers in 2 ms and then
//! finishes nothing for 500 ms has stopped; one that takes 400 ms per
//! request is given 2 s. The floor is not lower because a worker on a
//! saturated machine can itself go 200 ms without running a task: at
//! 200 ms, the bench's two-worker run saw a healthy receiver taken for
//! stalled.

mod host;
#[cfg(test)]
mod tests;

use host::{millis_since, Host, Waiting, MAX_STALL, MIN_STALL};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// A delivery that was let wait gives up after this many times the wait it was allowed.
const MAX_WAIT_FACTOR: u32 = 4;
/// Past this many hosts, idle ones are forgotten.
const MAX_TRACKED_HOSTS: usize = 10_000;

/// Why a host takes no delivery now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// Saturated, and silent for too long while other hosts answered.
    Stalled,
    /// Saturated, and a slot is too far off: the wait predicted too long, or waited out.
    Saturated,
}

pub struct HostLimiter {
    per_host: usize,
    wait: Duration,
    min_stall: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` when a request to any host last finished.
    witness: Arc<AtomicU64>,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
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
        let host = Arc::new(Host::new(self.per_host, millis_since(self.epoch)));
        hosts.insert(key.to_owned(), host.clone());
        host
    }

    /// Why a delivery to `key` would be neither given a slot nor let wait
    /// for one now, if it would not: it is then deferred before any work is
    /// done for it. A host never asked for is not busy (and is not tracked
    /// by asking).
    pub fn busy(&self, key: &str) -> Option<Busy> {
        let hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts.get(key).and_then(|host| self.verdict(host))
    }

    fn verdict(&self, host: &Host) -> Option<Busy> {
        if host.slots.available_permits() > 0 {
            return None;
        }
        let witness = self.witness.load(Ordering::Relaxed);
        if host.silent_too_long(witness, self.min_stall) {
            Some(Busy::Stalled)
        } else if host.predicted_wait(witness, self.per_host) > self.wait {
            Some(Busy::Saturated)
        } else {
            None
        }
    }

    /// A slot for `key` (`host:port`), or why not: the host is saturated
    /// and either does not admit a wait (stalled, or the wait predicted too
    /// long) or stalls while the delivery waits.
    pub async fn acquire(&self, key: &str) -> Result<HostPermit, Busy> {
        let host = self.host(key);
        let permit = match host.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if host.slots.available_permits() == 0 {
                    host.saturated_at.store(millis_since(self.epoch), Ordering::Relaxed);
                }
                permit
            }
            Err(_) => {
                if let Some(busy) = self.verdict(&host) {
                    return Err(busy);
                }
                let _waiting = Waiting::join(&host);
                self.wait_for_slot(&host).await?
            }
        };
        Ok(HostPermit {
            _permit: permit,
            host,
            witness: self.witness.clone(),
            epoch: self.epoch,
            taken: Instant::now(),
        })
    }

    /// Waits for a slot while the host keeps finishing requests; gives up
    /// once it counts as stalled, or after the longest wait a delivery is allowed.
    async fn wait_for_slot(&self, host: &Host) -> Result<OwnedSemaphorePermit, Busy> {
        let longest = (self.wait * MAX_WAIT_FACTOR).max(MAX_STALL);
        // Stalling is judged on the worker's progress, not on a timer: look again this often.
        let every = (self.min_stall / 5).max(Duration::from_millis(1));
        let started = Instant::now();
        let acquiring = host.slots.clone().acquire_owned();
        tokio::pin!(acquiring);
        loop {
            let left = longest.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Busy::Saturated);
            }
            if host.silent_too_long(self.witness.load(Ordering::Relaxed), self.min_stall) {
                return Err(Busy::Stalled);
            }
            if let Ok(permit) = tokio::time::timeout(left.min(every), &mut acquiring).await {
                // The semaphore is never closed.
                return permit.map_err(|_| Busy::Saturated);
            }
        }
    }
}
