//! Twilio Programmable Messaging (`POST /2010-04-01/Accounts/{sid}/Messages.json`)
//! and Programmable Voice (`POST /2010-04-01/Accounts/{sid}/Calls.json`, the
//! call's TwiML inline), form-encoded, HTTP basic auth (account SID and auth token).

use super::{Answer, Outbound, Provider, Receipt, SendError};
use crate::config::TwilioSender;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Twilio error codes that no retry can fix: invalid 'To' (21211), the user
/// opted out (21610), not a mobile number (21614), and a few more of the kind.
const PERMANENT_CODES: &[i64] = &[21211, 21408, 21610, 21612, 21614, 21617, 21635];

/// A Twilio account, as both its messages and its calls are created in it.
pub struct TwilioAccount {
    pub http: reqwest::Client,
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: SecretString,
    /// `StatusCallback`: where Twilio reports delivery or the call's end
    /// (`PUBLIC_BASE_URL` set).
    pub status_callback: Option<String>,
}

impl TwilioAccount {
    pub fn new(
        http: &reqwest::Client,
        base_url: &str,
        account_sid: &str,
        auth_token: &SecretString,
        status_callback: &Option<String>,
    ) -> Self {
        Self {
            http: http.clone(),
            base_url: base_url.to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.clone(),
            status_callback: status_callback.clone(),
        }
    }

    /// Creates a `resource` (`Messages`, `Calls`) from `form`, with the
    /// status callback when one is set: the new resource's sid (`what`), or
    /// the failure, permanent when its code is one of `permanent`.
    async fn create(
        &self,
        resource: &str,
        mut form: Vec<(&str, &str)>,
        permanent: &[i64],
        what: &str,
    ) -> Result<Receipt, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json",
            self.base_url.trim_end_matches('/'),
            self.account_sid
        );
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let request = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&form);
        created(request, permanent, what).await
    }
}

/// Programmable Messaging: an SMS from a number or a messaging service.
pub struct Twilio {
    pub account: TwilioAccount,
    pub sender: TwilioSender,
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
        let sender = match &self.sender {
            TwilioSender::From(from) => ("From", from.as_str()),
            TwilioSender::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let form = vec![("To", message.to.as_str()), sender, ("Body", message.text.as_str())];
        self.account
            .create("Messages", form, PERMANENT_CODES, "a message sid")
            .await
    }
}

/// Twilio's answer to a create (a message or a call): the new resource's
/// sid, or the failure, permanent when its code is one of `permanent`.
async fn created(request: reqwest::RequestBuilder, permanent: &[i64], what: &str) -> Result<Receipt, SendError> {
    let answer = Answer::of(request).await?;
    if answer.status.is_success() {
        let created: Created = serde_json::from_slice(&answer.body).map_err(|_| answer.malformed("Twilio", what))?;
        return Ok(Receipt {
            message_id: created.sid,
        });
    }
    let error: Option<TwilioError> = serde_json::from_slice(&answer.body).ok();
    let code = error.as_ref().and_then(|e| e.code);
    let is_permanent = code.is_some_and(|c| permanent.contains(&c));
    Err(answer.failure(code, error.and_then(|e| e.message), "Twilio", is_permanent, false))
}

/// Twilio error codes a call can never get past: invalid 'To' (21211,
/// 13223, 13224), no permission to call that region (21215), a number
/// that cannot be called (21216, 21217), an invalid or unverified 'From'
/// (21210, 21212), the call limit of an unpaid account (21219).
const CALL_PERMANENT_CODES: &[i64] = &[13223, 13224, 21210, 21211, 21212, 21215, 21216, 21217, 21219];

/// Programmable Voice: a call that reads the code (the TwiML of
/// `shared::locale::voice`), with a status callback when `PUBLIC_BASE_URL` is set.
pub struct TwilioVoice {
    pub account: TwilioAccount,
    /// `TWILIO_VOICE_FROM` (default `TWILIO_FROM`).
    pub from: String,
}

impl Provider for TwilioVoice {
    fn name(&self) -> &'static str {
        "twilio"
    }

    /// `message.text` is the call's TwiML.
    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let form = vec![
            ("To", message.to.as_str()),
            ("From", self.from.as_str()),
            ("Twiml", message.text.as_str()),
        ];
        self.account
            .create("Calls", form, CALL_PERMANENT_CODES, "a call sid")
            .await
    }
}
