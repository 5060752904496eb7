//! What this worker knows of each endpoint it is delivering to: requests in
//! flight (capped per endpoint, so a slow one holds only its own slots),
//! when it last showed life, and failures without an answer in a row. From
//! these it judges an endpoint stalled, to be rested (`paused_until`) so its
//! backlog waits in PostgreSQL.
//!
//! Like `hosts/`, silence is judged against the worker's own progress (the
//! last time a request to any endpoint finished): a worker starved of CPU
//! finishes nothing anywhere, which says nothing against one endpoint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A saturated endpoint that finished nothing for this long while others did is stalled.
pub(super) const STALL: Duration = Duration::from_secs(2);
/// Requests in a row that got no answer (timeouts, refused connections) before a rest.
pub(super) const SILENT_IN_A_ROW: u32 = 3;
/// The first rest; each rest in a row doubles it, up to [`MAX_REST`].
const FIRST_REST: Duration = Duration::from_secs(5);
const MAX_REST: Duration = Duration::from_secs(60);
/// Past this many endpoints, idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

/// How a request to an endpoint ended, as far as stalling goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Heard {
    /// A 2xx.
    Success,
    /// Another answer: the endpoint is alive.
    Answer,
    /// A timeout or a connection error.
    Nothing,
}

#[derive(Debug)]
struct Endpoint {
    in_flight: usize,
    silent_in_a_row: u32,
    rests_in_a_row: u32,
    /// The last request finished, or its last free slot taken.
    progress: Instant,
    /// Until when this worker rested it (so it is not rested again meanwhile).
    resting_until: Option<Instant>,
}

pub(super) struct Tracker {
    per_endpoint: usize,
    /// The last time any request finished.
    witness: Mutex<Instant>,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl Tracker {
    pub(super) fn new(per_endpoint: usize) -> Self {
        Self {
            per_endpoint: per_endpoint.max(1),
            witness: Mutex::new(Instant::now()),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        // A poisoned lock only means another task panicked mid-update; the map is still usable.
        self.endpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The endpoints with requests in flight here and their free slots,
    /// for the claim (others have `per_endpoint`).
    pub(super) fn busy(&self) -> Vec<(String, i32)> {
        self.lock()
            .iter()
            .filter(|(_, endpoint)| endpoint.in_flight > 0)
            .map(|(id, endpoint)| {
                let free = self.per_endpoint.saturating_sub(endpoint.in_flight);
                (id.clone(), i32::try_from(free).unwrap_or(0))
            })
            .collect()
    }

    /// A request to `id` starts.
    pub(super) fn started(&self, id: &str) {
        let mut endpoints = self.lock();
        if endpoints.len() >= MAX_TRACKED && !endpoints.contains_key(id) {
            endpoints.retain(|_, endpoint| endpoint.in_flight > 0 || endpoint.resting_until.is_some());
        }
        let now = Instant::now();
        let endpoint = endpoints.entry(id.to_owned()).or_insert_with(|| Endpoint {
            in_flight: 0,
            silent_in_a_row: 0,
            rests_in_a_row: 0,
            progress: now,
            resting_until: None,
        });
        endpoint.in_flight += 1;
        if endpoint.in_flight == self.per_endpoint {
            endpoint.progress = now;
        }
    }

    /// A request to `id` ended; the rest it should now take, if any.
    pub(super) fn finished(&self, id: &str, heard: Heard) -> Option<Duration> {
        let now = Instant::now();
        {
            let mut witness = self.witness.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *witness = now;
        }
        let mut endpoints = self.lock();
        let endpoint = endpoints.get_mut(id)?;
        endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        endpoint.progress = now;
        match heard {
            Heard::Success => {
                endpoint.silent_in_a_row = 0;
                endpoint.rests_in_a_row = 0;
            }
            Heard::Answer => endpoint.silent_in_a_row = 0,
            Heard::Nothing => endpoint.silent_in_a_row = endpoint.silent_in_a_row.saturating_add(1),
        }
        if endpoint.silent_in_a_row >= SILENT_IN_A_ROW {
            endpoint.silent_in_a_row = 0;
            return rest(endpoint, now);
        }
        None
    }

    /// The saturated endpoints that finished nothing for [`STALL`] while
    /// others did, each with the rest it should take now.
    pub(super) fn stalled(&self) -> Vec<(String, Duration)> {
        let witness = *self.witness.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let mut endpoints = self.lock();
        let mut stalled = Vec::new();
        for (id, endpoint) in endpoints.iter_mut() {
            let silent = witness.saturating_duration_since(endpoint.progress);
            if endpoint.in_flight >= self.per_endpoint && silent >= STALL {
                if let Some(duration) = rest(endpoint, now) {
                    stalled.push((id.clone(), duration));
                }
            }
        }
        stalled
    }
}

/// Rests an endpoint unless it is resting already: 5 s, doubling while it
/// keeps stalling, at most a minute.
fn rest(endpoint: &mut Endpoint, now: Instant) -> Option<Duration> {
    if endpoint.resting_until.is_some_and(|until| until > now) {
        return None;
    }
    let duration = FIRST_REST
        .saturating_mul(1u32 << endpoint.rests_in_a_row.min(4))
        .min(MAX_REST);
    endpoint.rests_in_a_row = endpoint.rests_in_a_row.saturating_add(1);
    endpoint.resting_until = Some(now + duration);
    Some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_endpoint() {
        let tracker = Tracker::new(2);
        tracker.started("a");
        tracker.started("a");
        tracker.started("b");
        let mut busy = tracker.busy();
        busy.sort();
        assert_eq!(busy, vec![("a".to_owned(), 0), ("b".to_owned(), 1)]);
        assert_eq!(tracker.finished("a", Heard::Success), None);
        assert_eq!(tracker.finished("b", Heard::Answer), None);
        assert_eq!(tracker.busy(), vec![("a".to_owned(), 1)]);
    }

    #[test]
    fn silence_in_a_row_rests_an_endpoint_longer_each_time() {
        let tracker = Tracker::new(8);
        let mut rests = Vec::new();
        for _ in 0..3 {
            for _ in 0..SILENT_IN_A_ROW {
                tracker.started("dead");
            }
            for _ in 0..SILENT_IN_A_ROW {
                if let Some(rest) = tracker.finished("dead", Heard::Nothing) {
                    rests.push(rest);
                }
            }
            // The rest is over (as if its time had passed).
            tracker.lock().get_mut("dead").unwrap().resting_until = None;
        }
        assert_eq!(
            rests,
            vec![Duration::from_secs(5), Duration::from_secs(10), Duration::from_secs(20)]
        );
        tracker.started("dead");
        assert_eq!(tracker.finished("dead", Heard::Success), None);
        assert_eq!(tracker.lock()["dead"].rests_in_a_row, 0, "a 2xx starts over");
    }

    #[test]
    fn a_saturated_endpoint_is_stalled_only_while_others_progress() {
        let tracker = Tracker::new(1);
        tracker.started("dead");
        let past = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        tracker.lock().get_mut("dead").unwrap().progress = past;
        *tracker.witness.lock().unwrap() = past;
        assert!(tracker.stalled().is_empty(), "nothing else finished: no judgement");
        tracker.started("alive");
        tracker.finished("alive", Heard::Success);
        let stalled = tracker.stalled();
        assert_eq!(stalled, vec![("dead".to_owned(), Duration::from_secs(5))]);
        assert!(tracker.stalled().is_empty(), "not rested twice");
    }
}
