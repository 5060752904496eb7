//! The webhook event types a consumer can subscribe to (docs/contract.md
//! §13): their names as they appear in a body's `type` and in an endpoint's
//! `eventTypes`, and what each means. The catalogue the API serves
//! (`GET /v2/webhook-event-types`) and the filters the webhook worker
//! applies are both this list.

use serde::{Deserialize, Serialize};

/// One event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEventType {
    #[serde(rename = "phone_validation_sent")]
    Sent,
    #[serde(rename = "phone_validation_delivered")]
    Delivered,
    #[serde(rename = "phone_validation_undelivered")]
    Undelivered,
    #[serde(rename = "phone_validation_validated")]
    Validated,
    #[serde(rename = "phone_validation_failed")]
    Failed,
    #[serde(rename = "fraud_guard_blocked")]
    FraudGuardBlocked,
}

impl WebhookEventType {
    /// Every type, in the catalogue's order.
    pub const ALL: [WebhookEventType; 6] = [
        WebhookEventType::Sent,
        WebhookEventType::Delivered,
        WebhookEventType::Undelivered,
        WebhookEventType::Validated,
        WebhookEventType::Failed,
        WebhookEventType::FraudGuardBlocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::Sent => "phone_validation_sent",
            WebhookEventType::Delivered => "phone_validation_delivered",
            WebhookEventType::Undelivered => "phone_validation_undelivered",
            WebhookEventType::Validated => "phone_validation_validated",
            WebhookEventType::Failed => "phone_validation_failed",
            WebhookEventType::FraudGuardBlocked => "fraud_guard_blocked",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// What the event means, for the catalogue.
    pub fn description(self) -> &'static str {
        match self {
            WebhookEventType::Sent => {
                "A code left through a provider: one per send, repeats, failovers and channel changes included; \
                 `providerConfirmation` says which channel, provider and message."
            }
            WebhookEventType::Delivered => "A provider reported the code delivered to the phone.",
            WebhookEventType::Undelivered => {
                "A provider reported the code undelivered (a failover to another provider or channel may follow)."
            }
            WebhookEventType::Validated => "The user typed the right code.",
            WebhookEventType::Failed => {
                "The validation ended without success; `failedReason` says why (`expired` when nobody typed the code in time)."
            }
            WebhookEventType::FraudGuardBlocked => {
                "The fraud guard blocked a prefix; the object is `{prefix, until, sent, validated}`."
            }
        }
    }

    /// Whether its object is a Phone Validation (every type but the fraud guard's).
    pub fn is_validation(self) -> bool {
        self != WebhookEventType::FraudGuardBlocked
    }
}

impl std::fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_serde() {
        for kind in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        assert_eq!(WebhookEventType::parse("phone_validation_sent "), None);
    }
}
