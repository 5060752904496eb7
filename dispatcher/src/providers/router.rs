//! Which SMS provider takes a message: a calling code's first choice
//! (`SMS_ROUTES`), then the others in order of preference (`SMS_PROVIDER`),
//! skipping a provider whose circuit breaker is open.
//!
//! A breaker opens after `failures` consecutive transient failures (5xx,
//! timeouts, throttling: the provider's trouble, not the number's) and stays
//! open for `open_for`; then one request may probe it (half-open): success
//! closes it, failure opens it again. Each dispatcher instance keeps its own
//! breakers: they summarise what that instance sees, and every instance
//! reaches the same verdict within a few requests, so nothing is shared.
//!
//! A provider that throttles (429) is not failing: its breaker hears an
//! answer, and its `Pacer` slows the sends to it instead (`pacing`); one
//! that asked for a long rest is passed by like an open breaker.

use super::pacing::Pacer;
use super::AnyProvider;
use crate::config::BreakerConfig;
use shared::domain::CountryCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// A breaker's state, as the `provider_breaker_state` gauge shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

pub struct Breaker {
    config: BreakerConfig,
    epoch: Instant,
    consecutive: AtomicU32,
    /// Milliseconds since `epoch` until which it is open (0: closed).
    open_until: AtomicU64,
    /// Milliseconds since `epoch` when a half-open probe started (0: none).
    /// A probe that never reports back (its code expired first) stops
    /// counting after `open_for`, so the breaker cannot stay shut for good.
    probing_since: AtomicU64,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            epoch: Instant::now(),
            consecutive: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn state(&self) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if self.now() < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go now (in half-open state, only one at a time).
    pub fn allows(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                let now = self.now().max(1);
                let since = self.probing_since.load(Ordering::Acquire);
                let stale = since != 0 && now.saturating_sub(since) >= self.open_for_ms();
                (since == 0 || stale)
                    && self
                        .probing_since
                        .compare_exchange(since, now, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            }
        }
    }

    /// The provider answered (even a permanent refusal is an answer).
    pub fn succeeded(&self) {
        self.consecutive.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        self.probing_since.store(0, Ordering::Release);
    }

    /// A transient failure: the breaker opens at the threshold, or again
    /// after a failed probe.
    pub fn failed(&self) {
        let failures = self.consecutive.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let probe_failed = self.probing_since.swap(0, Ordering::AcqRel) != 0;
        if probe_failed || failures >= self.config.failures {
            self.open_until
                .store(self.now().saturating_add(self.open_for_ms()).max(1), Ordering::Release);
        }
    }

    fn open_for_ms(&self) -> u64 {
        u64::try_from(self.config.open_for.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A provider, its breaker and its pacing.
pub struct Route {
    pub provider: AnyProvider,
    pub breaker: Breaker,
    pub pacer: Pacer,
}

impl Route {
    /// Neither resting nor behind an open breaker (a half-open breaker lets
    /// this caller be its probe).
    fn available(&self) -> bool {
        self.pacer.resting().is_none() && self.breaker.allows()
    }
}

pub struct SmsRouter {
    routes: Vec<Route>,
    /// Calling code → index of its first choice in `routes`.
    first_choice: HashMap<u16, usize>,
}

impl SmsRouter {
    /// `providers` in order of preference; `first_choice` by calling code;
    /// `in_flight`: the most requests in flight to one provider.
    pub fn new(
        providers: Vec<AnyProvider>,
        first_choice: &[(CountryCode, String)],
        breaker: BreakerConfig,
        in_flight: u32,
    ) -> Self {
        let routes: Vec<Route> = providers
            .into_iter()
            .map(|provider| Route {
                provider,
                breaker: Breaker::new(breaker),
                pacer: Pacer::new(in_flight),
            })
            .collect();
        let first_choice = first_choice
            .iter()
            .filter_map(|(code, name)| {
                let index = routes.iter().position(|r| super::Provider::name(&r.provider) == name)?;
                Some((code.value(), index))
            })
            .collect();
        Self { routes, first_choice }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The order providers are tried in for a calling code.
    fn order(&self, calling_code: u16) -> Vec<&Route> {
        let first = self.first_choice.get(&calling_code).copied();
        first
            .into_iter()
            .chain((0..self.routes.len()).filter(|i| Some(*i) != first))
            .filter_map(|i| self.routes.get(i))
            .collect()
    }

    /// The route for the next attempt to `calling_code`: the first whose
    /// breaker lets it through and that is not resting, preferring one other
    /// than `avoid` (the one that just failed); when none is available, the
    /// first in order (something must be tried while the code is valid; a
    /// resting one parks the send until its rest is over).
    pub fn pick(&self, calling_code: u16, avoid: Option<&str>) -> Option<&Route> {
        let order = self.order(calling_code);
        let name = |r: &Route| super::Provider::name(&r.provider);
        order
            .iter()
            .copied()
            .find(|r| Some(name(r)) != avoid && r.available())
            .or_else(|| order.iter().copied().find(|r| r.available()))
            .or_else(|| order.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::LogProvider;
    use std::time::Duration;

    fn breaker(failures: u32, open_ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failures,
            open_for: Duration::from_millis(open_ms),
        })
    }

    #[test]
    fn consecutive_failures_open_the_breaker_and_a_probe_closes_it() {
        let b = breaker(3, 40);
        b.failed();
        b.failed();
        assert_eq!(b.state(), BreakerState::Closed);
        b.succeeded();
        b.failed();
        b.failed();
        assert!(b.allows(), "a success in between resets the count");
        b.failed();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allows());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allows(), "one probe");
        assert!(!b.allows(), "only one");
        b.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker(1, 30);
        b.failed();
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allows());
        b.failed();
        assert_eq!(b.state(), BreakerState::Open);
    }

    fn log() -> AnyProvider {
        AnyProvider::Log(LogProvider { channel: "sms" })
    }

    #[test]
    fn a_country_goes_to_its_first_choice_and_an_open_breaker_is_skipped() {
        let routes = [(CountryCode::parse("+57").unwrap(), "log".to_owned())];
        let router = SmsRouter::new(vec![log()], &routes, BreakerConfig::default(), 16);
        assert!(router.pick(57, None).is_some());
        assert!(
            router.pick(507, Some("log")).is_some(),
            "the only one, even when it just failed"
        );
        for _ in 0..5 {
            router.routes()[0].breaker.failed();
        }
        assert_eq!(router.routes()[0].breaker.state(), BreakerState::Open);
        assert!(
            router.pick(507, None).is_some(),
            "every breaker open: the first is tried anyway"
        );
    }
}
