//! The decision: what an attempt's result means for the event. Pure
//! functions of the result, the attempt number, the schedule and a jitter
//! factor, so every rule is unit-tested without RabbitMQ or HTTP.

use std::time::Duration;

/// Jitter is ±20 % of the scheduled delay; a delay tier's TTL is its delay
/// plus that much (`shared::amqp::retry`), so a jittered wait always fits in it.
pub use shared::amqp::retry::JITTER;

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempted {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// `410 Gone`: the receiver wants no more.
    Gone,
    /// Any other answer, a timeout or a connection error.
    Failed {
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// The URL is not one the worker may call (SSRF guard, not http(s)).
    Refused,
}

/// What to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Stop: the receiver answered 410.
    Gone,
    /// Try again after `delay` (through a delay tier, which may cut it to its largest).
    Retry {
        delay: Duration,
    },
    /// Give up: park the event in the dead-letter queue, replayable.
    DeadLetter {
        reason: DeadLetterReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The schedule is used up.
    AttemptsExhausted,
    /// The URL was refused: replay once the URL or `WEBHOOK_ALLOW_PRIVATE` changes.
    Refused,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::AttemptsExhausted => "attempts_exhausted",
            DeadLetterReason::Refused => "refused",
        }
    }
}

/// The retry schedule.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
}

impl RetryPolicy {
    /// `schedule` must not be empty (the configuration guarantees it).
    pub fn new(schedule: Vec<Duration>) -> Self {
        Self { schedule }
    }

    /// Attempts in all: the first plus one per scheduled delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }

    /// The scheduled delay after attempt `attempt` (1-based), jittered by
    /// `jitter` (a factor in `1 ± JITTER`); `None` when none is left.
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.schedule.get(index).map(|d| jittered(*d, jitter))
    }

    /// How long a message deferred `deferrals` times waits: the first
    /// scheduled delays, growing with each deferral so a saturated host's
    /// backlog backs off.
    pub fn deferral(&self, deferrals: u32, jitter: f64) -> Duration {
        let index = usize::try_from(deferrals)
            .unwrap_or(usize::MAX)
            .min(2)
            .min(self.schedule.len().saturating_sub(1));
        let scheduled = self.schedule.get(index).copied().unwrap_or(Duration::from_secs(5));
        jittered(scheduled, jitter)
    }

    /// The decision for attempt `attempt` (1-based) that ended in `result`.
    pub fn decide(&self, attempt: u32, result: &Attempted, jitter: f64) -> Decision {
        match result {
            Attempted::Delivered { .. } => Decision::Delivered,
            Attempted::Gone => Decision::Gone,
            Attempted::Refused => Decision::DeadLetter {
                reason: DeadLetterReason::Refused,
            },
            Attempted::Failed { retry_after, .. } => match self.delay_after(attempt, jitter) {
                None => Decision::DeadLetter {
                    reason: DeadLetterReason::AttemptsExhausted,
                },
                Some(scheduled) => {
                    // Retry-After may ask for more time, never for less.
                    let delay = retry_after.map_or(scheduled, |asked| asked.max(scheduled));
                    Decision::Retry { delay }
                }
            },
        }
    }
}

fn jittered(delay: Duration, jitter: f64) -> Duration {
    delay.mul_f64(jitter.clamp(1.0 - JITTER, 1.0 + JITTER))
}

/// A random jitter factor in `1 ± JITTER`.
pub fn random_jitter() -> f64 {
    use rand::Rng;
    rand::thread_rng().gen_range((1.0 - JITTER)..=(1.0 + JITTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(secs: u64) -> Decision {
        Decision::Retry {
            delay: Duration::from_secs(secs),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::new(vec![
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(120),
        ])
    }

    fn failed(status: u16) -> Attempted {
        Attempted::Failed {
            status: Some(status),
            retry_after: None,
        }
    }

    #[test]
    fn a_2xx_is_delivered_and_a_410_stops() {
        assert_eq!(
            policy().decide(1, &Attempted::Delivered { status: 204 }, 1.0),
            Decision::Delivered
        );
        assert_eq!(policy().decide(1, &Attempted::Gone, 1.0), Decision::Gone);
    }

    #[test]
    fn failures_follow_the_schedule_then_dead_letter() {
        let p = policy();
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.decide(1, &failed(500), 1.0), retry(5));
        assert_eq!(p.decide(3, &failed(503), 1.0), retry(120));
        assert_eq!(
            p.decide(4, &failed(500), 1.0),
            Decision::DeadLetter {
                reason: DeadLetterReason::AttemptsExhausted
            }
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = policy();
        for jitter in [0.0, 0.8, 0.95, 1.2, 7.0] {
            let Decision::Retry { delay } = p.decide(2, &failed(500), jitter) else {
                panic!("expected a retry");
            };
            assert!(delay >= Duration::from_secs(24) && delay <= Duration::from_secs(36));
        }
        for _ in 0..100 {
            let j = random_jitter();
            assert!((0.8..=1.2).contains(&j));
        }
    }

    #[test]
    fn retry_after_lengthens_the_wait_never_shortens_it() {
        let p = policy();
        let asked = |secs| Attempted::Failed {
            status: Some(429),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(p.decide(1, &asked(20), 1.0), retry(20));
        assert_eq!(p.decide(1, &asked(1), 1.0), retry(5));
        assert_eq!(p.decide(1, &asked(3_000), 1.0), retry(3_000));
    }

    #[test]
    fn refused_urls_are_dead_lettered_at_once() {
        assert_eq!(
            policy().decide(1, &Attempted::Refused, 1.0),
            Decision::DeadLetter {
                reason: DeadLetterReason::Refused
            }
        );
    }

    #[test]
    fn deferrals_back_off_through_the_first_delays() {
        let p = policy();
        assert_eq!(p.deferral(0, 1.0), Duration::from_secs(5));
        assert_eq!(p.deferral(1, 1.0), Duration::from_secs(30));
        assert_eq!(p.deferral(9, 1.0), Duration::from_secs(120));
        let short = RetryPolicy::new(vec![Duration::from_secs(1)]);
        assert_eq!(short.deferral(5, 1.0), Duration::from_secs(1));
    }
}
