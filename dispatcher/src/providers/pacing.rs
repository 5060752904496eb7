//! Per-provider pacing, shared by every send of the process: how many
//! requests may be in flight to one provider at once, and whether it asked
//! for a rest.
//!
//! A provider that answers "too many requests" (HTTP 429; Twilio's 20429 is
//! its account's concurrency limit, Vonage's status 1 its rate limit) is
//! over what it takes: the limit drops to half of what was in flight when it
//! said so (at most once per its `Retry-After`, so one crowd of 429s counts
//! once), and sends beyond it wait here for a free place, costing nothing but
//! a parked task. Each accepted request grows the limit by one (it doubles in
//! a round trip once the provider keeps up), up to the ceiling: the in-flight
//! budget of the process. The throttled send itself waits its own
//! `Retry-After` before it is tried again (`plan::after_failure`). A
//! `Retry-After` longer than `MAX_INLINE_WAIT` rests the provider: the router
//! passes it by while another provider can take the code, and a send that
//! has no other is parked in the delay tiers until the rest is over, rather
//! than held in process.
//!
//! Nothing here sleeps on a timer except a rest; a send waits for a place
//! to free up, so the provider's answers set the pace.

use crate::plan::MAX_INLINE_WAIT;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The lowest the limit goes: a provider that throttles even this many has
/// its `Retry-After`s to slow it further.
pub const FLOOR: u32 = 4;

/// When a provider throttles without saying for how long, the window in
/// which its further 429s count as the same one.
const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

pub struct Pacer {
    ceiling: u32,
    state: Mutex<State>,
    freed: Notify,
}

struct State {
    limit: u32,
    in_flight: u32,
    /// Until when a 429 no longer cuts the limit again.
    cut_until: Option<Instant>,
    /// Until when the provider asked not to be called at all.
    resting_until: Option<Instant>,
}

/// A place in flight; freed when dropped.
pub struct Permit<'a> {
    pacer: &'a Pacer,
}

/// What `Pacer::admit` says.
pub enum Admission<'a> {
    /// Send now.
    Go(Permit<'a>),
    /// The provider rests this long yet.
    Resting(Duration),
    /// No place freed within the wait asked for.
    Busy,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.pacer.state.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.pacer.freed.notify_one();
    }
}

impl Pacer {
    /// `ceiling`: the most in flight to this provider (the process's budget).
    pub fn new(ceiling: u32) -> Self {
        let ceiling = ceiling.max(FLOOR);
        Self {
            ceiling,
            state: Mutex::new(State {
                limit: ceiling,
                in_flight: 0,
                cut_until: None,
                resting_until: None,
            }),
            freed: Notify::new(),
        }
    }

    /// The current limit, for `/metrics` and tests.
    pub fn limit(&self) -> u32 {
        self.state.lock().map(|s| s.limit).unwrap_or(self.ceiling)
    }

    /// How long the provider rests yet (`None`: it takes requests).
    pub fn resting(&self) -> Option<Duration> {
        let state = self.state.lock().ok()?;
        let left = state.resting_until?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    /// A place in flight, waiting at most `patience` for one to free up.
    pub async fn admit(&self, patience: Duration) -> Admission<'_> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(left) = self.resting() {
                return Admission::Resting(left);
            }
            if let Ok(mut state) = self.state.lock() {
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    let more = state.in_flight < state.limit;
                    drop(state);
                    if more {
                        // Room for others too (the limit grew): pass it on.
                        self.freed.notify_one();
                    }
                    return Admission::Go(Permit { pacer: self });
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Admission::Busy;
            }
        }
    }

    /// The provider accepted a request (or refused it for good: an answer).
    pub fn accepted(&self) {
        if let Ok(mut state) = self.state.lock() {
            if state.limit < self.ceiling {
                state.limit += 1;
                drop(state);
                self.freed.notify_one();
            }
        }
    }

    /// The provider said "too many requests", asking for `retry_after`;
    /// called while the throttled request still holds its place.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.cut_until.is_none_or(|until| now >= until) {
            let before = state.limit.min(state.in_flight.max(1));
            state.limit = (before / 2).max(FLOOR);
            state.cut_until = Some(now + retry_after.unwrap_or(DEFAULT_WINDOW).max(DEFAULT_WINDOW));
            metrics::counter!("provider_throttle_cuts_total").increment(1);
        }
        if let Some(wait) = retry_after.filter(|w| *w > MAX_INLINE_WAIT) {
            let until = now + wait;
            state.resting_until = Some(state.resting_until.map_or(until, |r| r.max(until)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission<'_>) -> Permit<'_> {
        match a {
            Admission::Go(p) => p,
            Admission::Resting(_) => panic!("resting"),
            Admission::Busy => panic!("busy"),
        }
    }

    #[tokio::test]
    async fn a_throttle_halves_what_was_in_flight_once_per_window_and_successes_grow_it_back() {
        let pacer = Pacer::new(64);
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(admitted(pacer.admit(Duration::ZERO).await));
        }
        pacer.throttled(Some(Duration::from_secs(1)));
        assert_eq!(pacer.limit(), 10, "half of the 20 in flight");
        pacer.throttled(Some(Duration::from_secs(1)));
        assert_eq!(pacer.limit(), 10, "the same crowd of 429s counts once");
        assert!(
            matches!(pacer.admit(Duration::ZERO).await, Admission::Busy),
            "20 in flight over a limit of 10: no place"
        );
        held.truncate(9);
        let permit = admitted(pacer.admit(Duration::ZERO).await);
        assert!(matches!(pacer.admit(Duration::ZERO).await, Admission::Busy));
        drop(permit);
        for _ in 0..100 {
            pacer.accepted();
        }
        assert_eq!(pacer.limit(), 64, "back to the ceiling, never above");
    }

    #[tokio::test]
    async fn a_waiting_send_goes_as_soon_as_a_place_frees_up() {
        let pacer = std::sync::Arc::new(Pacer::new(FLOOR));
        let held: Vec<_> = futures_util::future::join_all((0..FLOOR).map(|_| pacer.admit(Duration::ZERO)))
            .await
            .into_iter()
            .map(admitted)
            .collect();
        let waiter = {
            let pacer = pacer.clone();
            tokio::spawn(async move { matches!(pacer.admit(Duration::from_secs(30)).await, Admission::Go(_)) })
        };
        drop(held);
        assert!(waiter.await.expect("the waiter"), "admitted once places freed");
    }

    #[tokio::test]
    async fn a_long_retry_after_rests_the_provider() {
        let pacer = Pacer::new(16);
        pacer.throttled(Some(Duration::from_secs(2)));
        assert!(
            pacer.resting().is_none(),
            "a short Retry-After is the throttled send's own wait"
        );
        let permit = admitted(pacer.admit(Duration::ZERO).await);
        drop(permit);
        pacer.throttled(Some(Duration::from_secs(60)));
        let admission = pacer.admit(Duration::ZERO).await;
        let Admission::Resting(left) = admission else {
            panic!("a 60 s Retry-After rests the provider");
        };
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    }
}
