//! Meta's WhatsApp Cloud API: an authentication template whose body parameter
//! and copy-code URL button carry the code.

use super::{Answer, Outbound, Provider, Receipt, SendError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

/// The recipient is not a WhatsApp user: SMS may still reach them.
const NOT_ON_WHATSAPP: i64 = 131026;

pub struct MetaWhatsapp {
    pub http: reqwest::Client,
    pub base_url: String,
    pub api_version: String,
    pub token: SecretString,
    pub phone_number_id: String,
    pub template: String,
}

#[derive(Deserialize)]
struct Sent {
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: MetaError,
}

#[derive(Deserialize)]
struct MetaError {
    code: Option<i64>,
    message: Option<String>,
}

/// The request body for an authentication template.
pub fn template_body(template: &str, message: &Outbound) -> serde_json::Value {
    // Meta's code for the locale (`pt_BR`): the template must be approved in it.
    let language = message.language.whatsapp_language();
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to.trim_start_matches('+'),
        "type": "template",
        "template": {
            "name": template,
            "language": {"code": language},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": message.code}]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": message.code}]}
            ]
        }
    })
}

impl Provider for MetaWhatsapp {
    fn name(&self) -> &'static str {
        "meta"
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let url = format!(
            "{}/{}/{}/messages",
            self.base_url.trim_end_matches('/'),
            self.api_version,
            self.phone_number_id
        );
        let answer = Answer::of(
            self.http
                .post(url)
                .bearer_auth(self.token.expose_secret())
                .json(&template_body(&self.template, message)),
        )
        .await?;
        if answer.status.is_success() {
            let sent: Sent =
                serde_json::from_slice(&answer.body).map_err(|_| answer.malformed("WhatsApp", "a message id"))?;
            let id = sent.messages.into_iter().next().map(|m| m.id).unwrap_or_default();
            return Ok(Receipt { message_id: id });
        }
        let error = serde_json::from_slice::<ErrorBody>(&answer.body).ok().map(|b| b.error);
        let code = error.as_ref().and_then(|e| e.code);
        let not_on_whatsapp = code == Some(NOT_ON_WHATSAPP);
        Err(answer.failure(
            code,
            error.and_then(|e| e.message),
            "WhatsApp",
            not_on_whatsapp,
            not_on_whatsapp,
        ))
    }
}
