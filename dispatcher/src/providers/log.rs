//! `log`: prints the message, code included, to the log. Development only:
//! this is the one place a plain code may appear in a log line.

use super::{Outbound, Provider, Receipt, SendError};

pub struct LogProvider {
    pub channel: &'static str,
}

impl Provider for LogProvider {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let message_id = format!("LOG{}", shared::ObjectId::new());
        tracing::info!(target: "otp_log_provider", channel = self.channel, to = %message.to, message_id = %message_id, "{}", message.text);
        Ok(Receipt { message_id })
    }
}
