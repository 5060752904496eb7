//! One host's state: its slots, when it last showed life, its usual
//! request time, and the waits and silences judged from them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A saturated host is stalled after this many of its usual request times without a finished request...
pub(super) const STALL_FACTOR: u64 = 8;
/// ...but never sooner than this (a host with no history is judged by it)...
pub(super) const MIN_STALL: Duration = Duration::from_millis(500);
/// ...nor later than this.
pub(super) const MAX_STALL: Duration = Duration::from_secs(2);

pub(super) struct Host {
    pub(super) slots: Arc<Semaphore>,
    /// Milliseconds since `epoch` when a request to this host last finished.
    pub(super) last_release: AtomicU64,
    /// Milliseconds since `epoch` when its last free slot was taken.
    pub(super) saturated_at: AtomicU64,
    /// Moving average of its request times, in microseconds (0: none yet).
    pub(super) usual_micros: AtomicU64,
    /// Deliveries waiting for one of its slots.
    pub(super) waiting: AtomicUsize,
}

impl Host {
    /// A host with `per_host` free slots, last heard of at `now`.
    pub(super) fn new(per_host: usize, now: u64) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(per_host)),
            last_release: AtomicU64::new(now),
            saturated_at: AtomicU64::new(now),
            usual_micros: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Milliseconds since `epoch` of its last sign of life.
    pub(super) fn progress(&self) -> u64 {
        self.last_release
            .load(Ordering::Relaxed)
            .max(self.saturated_at.load(Ordering::Relaxed))
    }

    /// How long it may finish nothing while saturated before it is stalled.
    pub(super) fn stall_after(&self, min: Duration) -> Duration {
        let usual = Duration::from_micros(self.usual_micros.load(Ordering::Relaxed));
        (usual * STALL_FACTOR as u32).clamp(min, MAX_STALL.max(min))
    }

    /// How long it has finished nothing while other hosts did, up to
    /// `witness` (the last time any request finished).
    pub(super) fn silence(&self, witness: u64) -> Duration {
        Duration::from_millis(witness.saturating_sub(self.progress()))
    }

    /// Whether, saturated, it has been silent for too long.
    pub(super) fn silent_too_long(&self, witness: u64, min: Duration) -> bool {
        self.silence(witness) >= self.stall_after(min)
    }

    /// How long a delivery that joins the wait now is expected to wait, with
    /// `per_host` slots: the waiting ones and it, times its current request
    /// time (the usual one, or its silence when longer).
    pub(super) fn predicted_wait(&self, witness: u64, per_host: usize) -> Duration {
        let usual = Duration::from_micros(self.usual_micros.load(Ordering::Relaxed));
        let silent = self.silence(witness);
        let ahead = u32::try_from(self.waiting.load(Ordering::Relaxed).saturating_add(1)).unwrap_or(u32::MAX);
        usual.max(silent).saturating_mul(ahead) / u32::try_from(per_host).unwrap_or(u32::MAX).max(1)
    }

    /// Folds one request time into the average (weight 1/8).
    pub(super) fn observe(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        // Racing updates may drop a sample; the average stays an average.
        let old = self.usual_micros.load(Ordering::Relaxed);
        let new = if old == 0 { took } else { old - old / 8 + took / 8 };
        self.usual_micros.store(new, Ordering::Relaxed);
    }
}

/// Counts a delivery among its host's waiters for as long as it lives
/// (a wait given up or cancelled stops counting).
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn join(host: &'a Host) -> Self {
        host.waiting.fetch_add(1, Ordering::Relaxed);
        Self(&host.waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
