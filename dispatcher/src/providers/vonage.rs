//! Vonage's SMS API: `POST {base}/sms/json`, form-encoded, the API key and
//! secret in the body. Success is HTTP 200 with `messages[0].status == "0"`;
//! any other status is an error (docs/contract.md §11).

use super::{Answer, Outbound, Provider, Receipt, SendError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shared::locale::is_gsm7;

/// Vonage statuses no retry can fix: missing or invalid parameters (2, 3),
/// invalid credentials (4), invalid message (6), number barred (7), quota
/// exceeded (9), invalid sender (15), non-whitelisted destination (29).
/// `1` (throttled) and anything else are worth another try.
const PERMANENT_STATUSES: &[&str] = &["2", "3", "4", "6", "7", "9", "15", "29"];

pub struct Vonage {
    pub http: reqwest::Client,
    pub base_url: String,
    pub api_key: String,
    pub api_secret: SecretString,
    pub from: String,
    /// `{PUBLIC_BASE_URL}/callbacks/vonage/status`, when set: where delivery receipts go.
    pub callback: Option<String>,
}

#[derive(Deserialize)]
struct Answered {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

/// The form Vonage takes.
pub fn form<'a>(provider: &'a Vonage, message: &'a Outbound) -> Vec<(&'static str, &'a str)> {
    let mut form = vec![
        ("api_key", provider.api_key.as_str()),
        ("api_secret", provider.api_secret.expose_secret()),
        ("from", provider.from.as_str()),
        ("to", message.to.trim_start_matches('+')),
        ("text", message.text.as_str()),
    ];
    if !is_gsm7(&message.text) {
        form.push(("type", "unicode"));
    }
    if let Some(callback) = &provider.callback {
        form.push(("callback", callback.as_str()));
    }
    form
}

impl Provider for Vonage {
    fn name(&self) -> &'static str {
        "vonage"
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let url = format!("{}/sms/json", self.base_url.trim_end_matches('/'));
        let answer = Answer::of(self.http.post(url).form(&form(self, message))).await?;
        if !answer.status.is_success() {
            return Err(answer.failure(None, None, "Vonage", false, false));
        }
        let answered: Answered =
            serde_json::from_slice(&answer.body).map_err(|_| answer.malformed("Vonage", "a message status"))?;
        let Some(first) = answered.messages.into_iter().next() else {
            return Err(answer.malformed("Vonage", "a message"));
        };
        match (first.status.as_str(), first.message_id) {
            ("0", Some(message_id)) => Ok(Receipt { message_id }),
            ("0", None) => Err(answer.malformed("Vonage", "a message-id")),
            (status, _) => {
                let text = first.error_text.unwrap_or_else(|| format!("Vonage status {status}"));
                Err(if PERMANENT_STATUSES.contains(&status) {
                    SendError::Permanent {
                        code: Some(status.to_owned()),
                        message: text,
                        not_on_whatsapp: false,
                    }
                } else {
                    SendError::Transient {
                        code: Some(status.to_owned()),
                        message: text,
                        retry_after: None,
                        // Status 1, "Throttled": over the account's rate.
                        throttled: status == "1",
                    }
                })
            }
        }
    }
}
