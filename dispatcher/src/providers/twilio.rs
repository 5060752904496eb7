//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, HTTP basic auth (account SID and auth token).

use super::{Answer, Outbound, Provider, Receipt, SendError};
use crate::config::TwilioSender;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Twilio error codes that no retry can fix: invalid 'To' (21211), the user
/// opted out (21610), not a mobile number (21614), and a few more of the kind.
const PERMANENT_CODES: &[i64] = &[21211, 21408, 21610, 21612, 21614, 21617, 21635];

pub struct Twilio {
    pub http: reqwest::Client,
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: SecretString,
    pub sender: TwilioSender,
    /// `StatusCallback`: where Twilio reports delivery (`PUBLIC_BASE_URL` set).
    pub status_callback: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

impl Provider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url.trim_end_matches('/'),
            self.account_sid
        );
        let sender = match &self.sender {
            TwilioSender::From(from) => ("From", from.as_str()),
            TwilioSender::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let mut form = vec![("To", message.to.as_str()), sender, ("Body", message.text.as_str())];
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let answer = Answer::of(
            self.http
                .post(url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .form(&form),
        )
        .await?;
        if answer.status.is_success() {
            let created: Created =
                serde_json::from_slice(&answer.body).map_err(|_| answer.malformed("Twilio", "a message sid"))?;
            return Ok(Receipt {
                message_id: created.sid,
            });
        }
        let error: Option<TwilioError> = serde_json::from_slice(&answer.body).ok();
        let code = error.as_ref().and_then(|e| e.code);
        let permanent = code.is_some_and(|c| PERMANENT_CODES.contains(&c));
        Err(answer.failure(code, error.and_then(|e| e.message), "Twilio", permanent, false))
    }
}
