//! The dispatcher's decisions as pure functions, tested without RabbitMQ:
//! whether to send at all, and what to do after a failed attempt.

use crate::providers::SendError;
use chrono::{DateTime, Utc};
use shared::domain::PhoneValidation;
use shared::domain::ValidationStatus;
use std::time::Duration;

/// What to do with an `otp.requested` message.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Already sent, validated or failed: a duplicate delivery; nothing to do.
    Skip,
    /// Past its expiry: never send; fail it.
    FailExpired,
    Send,
}

pub fn plan(validation: &PhoneValidation, now: DateTime<Utc>) -> Plan {
    if validation.status != ValidationStatus::New {
        Plan::Skip
    } else if validation.is_expired(now) {
        Plan::FailExpired
    } else {
        Plan::Send
    }
}

/// Longest wait spent holding a message in process; longer waits go through a delay queue.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again in process after this wait.
    RetryInline(Duration),
    /// Park the message in a delay queue for at least this long.
    Park(Duration),
    /// The code would expire before the next try: give up (`provider_unavailable`).
    GiveUpUnavailable,
    /// The provider refused for good (`provider_rejected`).
    GiveUpRejected,
    /// WhatsApp cannot reach the number and the flow allows SMS: switch now.
    FallBackToSms,
}

/// Decides the next step after `error`. `backoff` is the next in-process
/// delay (`None` once the in-process budget is spent), `park` the delay of the
/// next queue tier.
pub fn after_failure(
    error: &SendError,
    backoff: Option<Duration>,
    park: Duration,
    can_fall_back: bool,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> AfterFailure {
    let (retry_after, not_on_whatsapp) = match error {
        SendError::Permanent { not_on_whatsapp, .. } => {
            return if *not_on_whatsapp && can_fall_back {
                AfterFailure::FallBackToSms
            } else {
                AfterFailure::GiveUpRejected
            };
        }
        SendError::Transient { retry_after, .. } => (*retry_after, false),
    };
    debug_assert!(!not_on_whatsapp);
    let left = (expires_at - now).to_std().unwrap_or(Duration::ZERO);
    let inline = backoff.map(|b| b.max(retry_after.unwrap_or(Duration::ZERO)));
    match inline {
        Some(wait) if wait <= MAX_INLINE_WAIT => {
            if wait >= left {
                AfterFailure::GiveUpUnavailable
            } else {
                AfterFailure::RetryInline(wait)
            }
        }
        _ => {
            let wait = park.max(retry_after.unwrap_or(Duration::ZERO));
            if wait >= left {
                AfterFailure::GiveUpUnavailable
            } else {
                AfterFailure::Park(wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(retry_after: Option<u64>) -> SendError {
        SendError::Transient {
            code: Some("500".into()),
            message: "down".into(),
            retry_after: retry_after.map(Duration::from_secs),
            throttled: false,
        }
    }

    fn permanent(not_on_whatsapp: bool) -> SendError {
        SendError::Permanent {
            code: Some("21211".into()),
            message: "bad number".into(),
            not_on_whatsapp,
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn transient_failures_retry_in_process_while_short_and_the_code_is_valid() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(10);
        assert_eq!(
            after_failure(&transient(None), Some(MS(200)), MS(5000), false, now, later),
            AfterFailure::RetryInline(MS(200))
        );
        assert_eq!(
            after_failure(&transient(Some(2)), Some(MS(200)), MS(5000), false, now, later),
            AfterFailure::RetryInline(MS(2000))
        );
        assert_eq!(
            after_failure(&transient(Some(60)), Some(MS(200)), MS(5000), false, now, later),
            AfterFailure::Park(MS(60_000))
        );
        assert_eq!(
            after_failure(&transient(None), None, MS(5000), false, now, later),
            AfterFailure::Park(MS(5000))
        );
    }

    #[test]
    fn nothing_is_tried_after_the_code_expires() {
        let now = Utc::now();
        let soon = now + chrono::Duration::milliseconds(100);
        assert_eq!(
            after_failure(&transient(None), Some(MS(200)), MS(5000), false, now, soon),
            AfterFailure::GiveUpUnavailable
        );
        assert_eq!(
            after_failure(&transient(None), None, MS(5000), false, now, soon),
            AfterFailure::GiveUpUnavailable
        );
    }

    #[test]
    fn permanent_failures_give_up_unless_sms_can_take_over() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(10);
        assert_eq!(
            after_failure(&permanent(false), Some(MS(1)), MS(1), true, now, later),
            AfterFailure::GiveUpRejected
        );
        assert_eq!(
            after_failure(&permanent(true), Some(MS(1)), MS(1), false, now, later),
            AfterFailure::GiveUpRejected
        );
        assert_eq!(
            after_failure(&permanent(true), Some(MS(1)), MS(1), true, now, later),
            AfterFailure::FallBackToSms
        );
    }
}
