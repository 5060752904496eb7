//! Message providers behind one trait: Twilio and Vonage (SMS), Meta's
//! WhatsApp Cloud API, and `log` for development; `AnyProvider` is whichever
//! is configured. Each classifies its failures as transient (retry while the
//! code is valid) or permanent (give up now).

pub mod configured;
mod log;
mod meta;
pub mod pacing;
pub mod redact;
pub mod router;
mod twilio;
pub mod vonage;

pub use self::log::LogProvider;
pub use meta::MetaWhatsapp;
pub use router::SmsRouter;
pub use twilio::{Twilio, TwilioVoice};
pub use vonage::Vonage;

use std::future::Future;
use std::time::Duration;

/// What to send, to whom.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// E.164, e.g. `+50762617737`.
    pub to: String,
    /// The full SMS text (code included); for a call, its TwiML.
    pub text: String,
    /// The bare code, for WhatsApp templates.
    pub code: String,
    pub language: shared::domain::Language,
}

/// The provider accepted the message.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub message_id: String,
}

/// Why a send did not go through.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try: timeout, connection error, 5xx, 429.
    #[error("transient provider failure {code:?}: {message}")]
    Transient {
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        /// "Too many requests": the provider is up but wants fewer of them
        /// (`pacing`), not a failure for its breaker.
        throttled: bool,
    },
    /// Never worth another try with this provider (bad number, opted out, ...).
    #[error("provider rejected the message {code:?}: {message}")]
    Permanent {
        code: Option<String>,
        message: String,
        /// WhatsApp says the number is not on WhatsApp: SMS may still reach it.
        not_on_whatsapp: bool,
    },
}

impl SendError {
    pub fn code(&self) -> Option<&str> {
        match self {
            SendError::Transient { code, .. } | SendError::Permanent { code, .. } => code.as_deref(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SendError::Transient { message, .. } | SendError::Permanent { message, .. } => message,
        }
    }

    /// A transport-level failure (timeout, refused connection): transient.
    /// The URL is left out: it holds the account id.
    pub fn from_transport(error: reqwest::Error) -> Self {
        let message = if error.is_timeout() {
            "provider request timed out".to_owned()
        } else {
            format!("provider unreachable: {}", error.without_url())
        };
        SendError::Transient {
            code: None,
            message,
            retry_after: None,
            throttled: false,
        }
    }

    /// The provider asked for fewer requests, and for how long (if it said).
    pub fn throttled(&self) -> Option<Option<Duration>> {
        match self {
            SendError::Transient {
                throttled: true,
                retry_after,
                ..
            } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A way to deliver a code.
pub trait Provider: Send + Sync {
    /// The name recorded in `providerConfirmation.provider` and in metrics.
    fn name(&self) -> &'static str;
    fn send(&self, message: &Outbound) -> impl Future<Output = Result<Receipt, SendError>> + Send;
}

/// A configured provider, whichever it is.
pub enum AnyProvider {
    Twilio(Twilio),
    TwilioVoice(TwilioVoice),
    Vonage(Vonage),
    Meta(MetaWhatsapp),
    Log(LogProvider),
}

impl Provider for AnyProvider {
    fn name(&self) -> &'static str {
        match self {
            AnyProvider::Twilio(p) => p.name(),
            AnyProvider::TwilioVoice(p) => p.name(),
            AnyProvider::Vonage(p) => p.name(),
            AnyProvider::Meta(p) => p.name(),
            AnyProvider::Log(p) => p.name(),
        }
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        match self {
            AnyProvider::Twilio(p) => p.send(message).await,
            AnyProvider::TwilioVoice(p) => p.send(message).await,
            AnyProvider::Vonage(p) => p.send(message).await,
            AnyProvider::Meta(p) => p.send(message).await,
            AnyProvider::Log(p) => p.send(message).await,
        }
    }
}

/// The most of a provider's answer that is read; a longer one is cut (a
/// success or an error body of these APIs is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A provider's HTTP answer, its body read up to `MAX_ANSWER_BYTES`
/// (transport failures are transient).
pub struct Answer {
    pub status: reqwest::StatusCode,
    /// `Retry-After` (seconds or an HTTP date), at most an hour.
    pub retry_after: Option<Duration>,
    pub body: bytes::Bytes,
}

impl Answer {
    pub async fn of(request: reqwest::RequestBuilder) -> Result<Self, SendError> {
        let mut response = request.send().await.map_err(SendError::from_transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(shared::http::parse_retry_after);
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(SendError::from_transport)? {
            let room = MAX_ANSWER_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_ANSWER_BYTES {
                break;
            }
        }
        Ok(Self {
            status,
            retry_after,
            body: body.freeze(),
        })
    }

    /// A success body that lacks what it should carry: worth another try.
    pub fn malformed(&self, provider: &str, missing: &str) -> SendError {
        SendError::Transient {
            code: None,
            message: format!("{provider} answered {} without {missing}", self.status),
            retry_after: None,
            throttled: false,
        }
    }

    /// The failure this answer means. `code` is the provider's own error code
    /// (the HTTP status stands in when it gave none); 429, 408 and 5xx are
    /// transient unless `permanent` says the code is final whatever the status.
    pub fn failure(
        &self,
        code: Option<i64>,
        message: Option<String>,
        provider: &str,
        permanent: bool,
        not_on_whatsapp: bool,
    ) -> SendError {
        let status = self.status;
        let code = Some(
            code.map(|c| c.to_string())
                .unwrap_or_else(|| status.as_u16().to_string()),
        );
        let message = message.unwrap_or_else(|| format!("{provider} answered {status}"));
        let transient = status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        if transient && !permanent {
            SendError::Transient {
                code,
                message,
                retry_after: self.retry_after,
                throttled: status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            }
        } else {
            SendError::Permanent {
                code,
                message,
                not_on_whatsapp,
            }
        }
    }
}
