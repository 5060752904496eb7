//! What providers report about a message after accepting it (docs/contract.md §11):
//! one vocabulary for Twilio's, Meta's and Vonage's statuses, an order so a
//! late report never moves a message back, and which failures another
//! provider (or channel) may get past. Recording a report is in
//! [`super::receipts`].

use super::Gateway;
use std::fmt;

/// A provider that reports on its messages through a signed callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportingProvider {
    Twilio,
    Vonage,
    /// WhatsApp through Meta's Cloud API.
    Meta,
}

impl ReportingProvider {
    /// As in `providerConfirmation.provider` and `provider_messages.provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportingProvider::Twilio => "twilio",
            ReportingProvider::Vonage => "vonage",
            ReportingProvider::Meta => "meta",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Twilio, Self::Vonage, Self::Meta]
            .into_iter()
            .find(|p| p.as_str() == value)
    }
}

/// One status report about one message, from the provider that sent it.
#[derive(Clone, Debug)]
pub struct Report {
    pub provider: ReportingProvider,
    pub message_id: String,
    pub status: DeliveryStatus,
    /// The provider's error code for a failure.
    pub error_code: Option<String>,
}

/// `providerConfirmation.deliveryStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Undelivered,
    Failed,
    Delivered,
    Read,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sent,
        DeliveryStatus::Undelivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// How far along a message is. A report only counts when it goes further:
    /// a late `sent` after `delivered` changes nothing. A failure outranks
    /// `sent` but not `delivered` (a carrier that delivered did not fail).
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Queued => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Undelivered | DeliveryStatus::Failed => 2,
            DeliveryStatus::Delivered => 3,
            DeliveryStatus::Read => 4,
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, DeliveryStatus::Undelivered | DeliveryStatus::Failed)
    }

    /// Twilio's `MessageStatus` (`accepted`, `queued`, `sending`, `sent`,
    /// `delivered`, `undelivered`, `failed`, `read`, `canceled`, ...).
    pub fn from_twilio(status: &str) -> Option<Self> {
        Some(match status {
            "accepted" | "scheduled" | "queued" | "sending" => DeliveryStatus::Queued,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "undelivered" => DeliveryStatus::Undelivered,
            "failed" | "canceled" => DeliveryStatus::Failed,
            _ => return None,
        })
    }

    /// Twilio's `CallStatus` of a voice call: a call that was answered and
    /// ran its course read the code (`completed`: delivered); one that was
    /// busy, not answered, failed or canceled did not (`undelivered`).
    pub fn from_twilio_call(status: &str) -> Option<Self> {
        Some(match status {
            "queued" | "initiated" => DeliveryStatus::Queued,
            "ringing" | "in-progress" => DeliveryStatus::Sent,
            "completed" => DeliveryStatus::Delivered,
            "busy" | "no-answer" | "failed" | "canceled" => DeliveryStatus::Undelivered,
            _ => return None,
        })
    }

    /// Meta's WhatsApp statuses (`sent`, `delivered`, `read`, `failed`).
    pub fn from_meta(status: &str) -> Option<Self> {
        Some(match status {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }

    /// Vonage's delivery receipt `status` (`unknown` says nothing).
    pub fn from_vonage(status: &str) -> Option<Self> {
        Some(match status {
            "accepted" | "buffered" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "expired" => DeliveryStatus::Undelivered,
            "failed" | "rejected" => DeliveryStatus::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an SMS reported undelivered with `code` might get through by
/// another provider: the handset or a carrier route, not the number, was the
/// trouble. Twilio: 30001 queue overflow, 30003 unreachable handset, 30007
/// carrier filtering, 30008 unknown error, 30009 missing segment, 30034
/// unregistered sender route. Vonage DLR `err-code`: 1 unknown, 2 absent
/// subscriber (temporary), 5 portability, 6 anti-spam, 7 handset busy,
/// 8 network error, 11 unroutable, 12 destination unreachable, 99 general.
/// Anything else (an invalid, barred, landline or opted-out number) is not.
pub fn sms_failure_is_transient(provider: &str, code: Option<&str>) -> bool {
    let Some(code) = code else {
        return false;
    };
    match provider {
        "twilio" => matches!(code, "30001" | "30003" | "30007" | "30008" | "30009" | "30034"),
        "vonage" => matches!(code, "1" | "2" | "5" | "6" | "7" | "8" | "11" | "12" | "99"),
        _ => false,
    }
}

/// Which failover, if any, a failure calls for: WhatsApp reported failed
/// with the flow's `smsFallback` → SMS; an SMS undelivered for a cause the
/// next provider may get past → the next provider.
pub fn failover_cause(report: &Report, gateway: Gateway, sms_fallback: bool) -> Option<&'static str> {
    if !report.status.is_failure() {
        return None;
    }
    match (gateway, report.provider) {
        (Gateway::Whatsapp, ReportingProvider::Meta) if sms_fallback => Some("whatsapp_failed"),
        (Gateway::Sms, provider) if sms_failure_is_transient(provider.as_str(), report.error_code.as_deref()) => {
            Some("sms_undelivered")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(provider: ReportingProvider, status: DeliveryStatus, code: Option<&str>) -> Report {
        Report {
            provider,
            message_id: "m".into(),
            status,
            error_code: code.map(str::to_owned),
        }
    }

    #[test]
    fn failovers_follow_the_channel_the_cause_and_the_flow() {
        use ReportingProvider::{Meta, Twilio};
        let whatsapp_failed = report(Meta, DeliveryStatus::Failed, Some("131026"));
        assert_eq!(
            failover_cause(&whatsapp_failed, Gateway::Whatsapp, true),
            Some("whatsapp_failed")
        );
        assert_eq!(
            failover_cause(&whatsapp_failed, Gateway::Whatsapp, false),
            None,
            "no smsFallback"
        );
        let unreachable = report(Twilio, DeliveryStatus::Undelivered, Some("30003"));
        assert_eq!(
            failover_cause(&unreachable, Gateway::Sms, false),
            Some("sms_undelivered")
        );
        let landline = report(Twilio, DeliveryStatus::Undelivered, Some("30006"));
        assert_eq!(failover_cause(&landline, Gateway::Sms, true), None, "permanent cause");
        let delivered = report(Twilio, DeliveryStatus::Delivered, None);
        assert_eq!(failover_cause(&delivered, Gateway::Sms, true), None);
        for provider in [Twilio, ReportingProvider::Vonage, Meta] {
            assert_eq!(ReportingProvider::parse(provider.as_str()), Some(provider));
        }
        assert_eq!(ReportingProvider::parse("test"), None);
    }

    #[test]
    fn statuses_only_move_forward_and_spellings_round_trip() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert!(DeliveryStatus::Delivered.rank() > DeliveryStatus::Sent.rank());
        assert!(DeliveryStatus::Failed.rank() > DeliveryStatus::Sent.rank());
        assert!(DeliveryStatus::Failed.rank() < DeliveryStatus::Delivered.rank());
        assert_eq!(DeliveryStatus::from_twilio("sending"), Some(DeliveryStatus::Queued));
        assert_eq!(
            DeliveryStatus::from_vonage("expired"),
            Some(DeliveryStatus::Undelivered)
        );
        assert_eq!(DeliveryStatus::from_vonage("unknown"), None);
        assert_eq!(DeliveryStatus::from_meta("read"), Some(DeliveryStatus::Read));
        assert_eq!(
            DeliveryStatus::from_twilio_call("completed"),
            Some(DeliveryStatus::Delivered)
        );
        for failed in ["busy", "no-answer", "failed", "canceled"] {
            assert_eq!(
                DeliveryStatus::from_twilio_call(failed),
                Some(DeliveryStatus::Undelivered),
                "{failed}"
            );
        }
        assert_eq!(DeliveryStatus::from_twilio_call("ringing"), Some(DeliveryStatus::Sent));
        assert_eq!(DeliveryStatus::from_twilio_call("answered-by-a-fax"), None);
    }

    #[test]
    fn only_route_and_handset_troubles_are_worth_another_provider() {
        assert!(sms_failure_is_transient("twilio", Some("30003")));
        assert!(!sms_failure_is_transient("twilio", Some("30006")), "landline");
        assert!(!sms_failure_is_transient("twilio", None));
        assert!(sms_failure_is_transient("vonage", Some("6")));
        assert!(!sms_failure_is_transient("vonage", Some("9")), "illegal number");
    }
}
