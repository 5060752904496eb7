//! The providers the configuration names, built once at start.

use super::twilio::TwilioAccount;
use super::{AnyProvider, LogProvider, MetaWhatsapp, SmsRouter, Twilio, TwilioVoice, Vonage};
use crate::config::{DispatcherConfig, SmsProviderConfig, VoiceConfig, WhatsappConfig};
use anyhow::Context;

/// The configured providers, one per channel (SMS through its router).
pub struct Providers {
    pub sms: SmsRouter,
    pub whatsapp: AnyProvider,
    pub voice: AnyProvider,
}

/// The SMS router, the WhatsApp provider and the voice provider.
///
/// One HTTP client for every provider. Its requests are HTTP/1.1 (reqwest
/// is built without HTTP/2): one request per connection at a time, kept
/// alive between requests. Every message in
/// flight (`DISPATCH_PREFETCH`) may be at one provider at once, so that many
/// idle connections are kept per provider host: fewer, and a burst's
/// connections would be closed after each answer and opened again (a TCP and
/// TLS handshake each) for the next.
pub fn build(config: &DispatcherConfig) -> anyhow::Result<Providers> {
    let in_flight = usize::from(config.prefetch).max(1);
    let http = reqwest::Client::builder()
        .timeout(config.provider_timeout)
        .connect_timeout(config.provider_timeout)
        .pool_max_idle_per_host(in_flight)
        .build()
        .context("while building the HTTP client")?;
    let sms: Vec<AnyProvider> = config.sms.providers.iter().map(|p| sms(p, &http)).collect();
    let whatsapp = match &config.whatsapp {
        WhatsappConfig::Log => AnyProvider::Log(LogProvider { channel: "whatsapp" }),
        WhatsappConfig::Meta {
            base_url,
            api_version,
            token,
            phone_number_id,
            template,
        } => AnyProvider::Meta(MetaWhatsapp {
            http: http.clone(),
            base_url: base_url.clone(),
            api_version: api_version.clone(),
            token: token.clone(),
            phone_number_id: phone_number_id.clone(),
            template: template.clone(),
        }),
    };
    let voice = match &config.voice {
        VoiceConfig::Log => AnyProvider::Log(LogProvider { channel: "voice" }),
        VoiceConfig::Twilio {
            base_url,
            account_sid,
            auth_token,
            from,
            status_callback,
        } => AnyProvider::TwilioVoice(TwilioVoice {
            account: TwilioAccount::new(&http, base_url, account_sid, auth_token, status_callback),
            from: from.clone(),
        }),
    };
    warn_if_log(&sms, &whatsapp, &voice);
    Ok(Providers {
        sms: SmsRouter::new(sms, &config.sms.routes, config.sms.breaker, u32::from(config.prefetch)),
        whatsapp,
        voice,
    })
}

fn sms(config: &SmsProviderConfig, http: &reqwest::Client) -> AnyProvider {
    match config {
        SmsProviderConfig::Log => AnyProvider::Log(LogProvider { channel: "sms" }),
        SmsProviderConfig::Twilio {
            base_url,
            account_sid,
            auth_token,
            sender,
            status_callback,
        } => AnyProvider::Twilio(Twilio {
            account: TwilioAccount::new(http, base_url, account_sid, auth_token, status_callback),
            sender: sender.clone(),
        }),
        SmsProviderConfig::Vonage {
            base_url,
            api_key,
            api_secret,
            from,
            callback,
        } => AnyProvider::Vonage(Vonage {
            http: http.clone(),
            base_url: base_url.clone(),
            api_key: api_key.clone(),
            api_secret: api_secret.clone(),
            from: from.clone(),
            callback: callback.clone(),
        }),
    }
}

fn warn_if_log(sms: &[AnyProvider], whatsapp: &AnyProvider, voice: &AnyProvider) {
    let logged = sms
        .iter()
        .map(|p| (p, "SMS_PROVIDER"))
        .chain([(whatsapp, "WHATSAPP_PROVIDER"), (voice, "VOICE_PROVIDER")]);
    for (provider, variable) in logged {
        if matches!(provider, AnyProvider::Log(_)) {
            tracing::warn!(
                "{variable} includes log: codes are written to this process's log and never reach a phone. \
                 Development only; set {variable} to a real provider in production."
            );
        }
    }
}
