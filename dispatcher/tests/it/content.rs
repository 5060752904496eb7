//! What the user receives (docs/contract.md §14): the built-in text of the
//! validation's locale through Fluent, a flow's template with its autofill
//! lines, the WhatsApp template's language, and SMS segments recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::domain::Language;
use shared::locale::{self, Args};
use testkit::dispatch::{code_in, created, form, Harness};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_brazilian_number_gets_its_code_in_portuguese_with_its_segments_recorded() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMbr")).await;
    let (_, sent) = h
        .send_one(json!({}), "11987654321", json!({"countryCode": "+55"}))
        .await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["language"], "pt-BR");
    let body = form(&h.twilio.received_requests().await.unwrap()[0])["Body"].clone();
    let code = code_in(&body);
    let expected = locale::sms_text(
        Language::PtBr,
        &Args {
            code: &code,
            app: "Verifik Client",
            minutes: 10,
        },
    );
    assert_eq!(body, expected);
    let counted = locale::segments(&body);
    let confirmation = &sent["providerConfirmation"];
    assert_eq!(confirmation["segments"], json!(counted.count));
    assert_eq!(confirmation["encoding"], counted.encoding.as_str());
    let metrics = shared::ops::prometheus().render();
    assert!(metrics.contains("sms_segments_total{provider=\"twilio\"}"), "{metrics}");
}

#[tokio::test]
async fn a_flows_template_goes_out_with_its_autofill_lines() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMown")).await;
    let settings = json!({
        "templates": {"sms": {"es": "{code} es tu código de {app}. Vence en {minutes} min."}},
        "webOtpDomain": "login.example.com",
        "androidAppHash": "FA+9qCX9VSu"
    });
    let (_, sent) = h.send_one(settings, "62647737", json!({"language": "es-PA"})).await;
    let body = form(&h.twilio.received_requests().await.unwrap()[0])["Body"].clone();
    let code = code_in(&body);
    assert_eq!(
        body,
        format!("{code} es tu código de Verifik Client. Vence en 10 min.\n\nFA+9qCX9VSu\n@login.example.com #{code}")
    );
    assert_eq!(sent["providerConfirmation"]["segments"], 2, "UCS-2: 67 units a part");
    assert_eq!(sent["providerConfirmation"]["encoding"], "UCS-2");
}

#[tokio::test]
async fn a_gsm_text_is_counted_as_gsm_7() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMen")).await;
    let (_, sent) = h.send_one(json!({"language": "en"}), "62647737", json!({})).await;
    assert_eq!(sent["providerConfirmation"]["segments"], 1);
    assert_eq!(sent["providerConfirmation"]["encoding"], "GSM-7");
}

#[tokio::test]
async fn whatsapp_gets_the_template_language_of_the_locale_and_no_segments() {
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": [{"id": "wamid.BR"}]})))
        .mount(&h.whatsapp)
        .await;
    let (_, sent) = h
        .send_one(
            json!({"phoneGateway": "whatsapp"}),
            "11987654321",
            json!({"countryCode": "+55"}),
        )
        .await;
    assert_eq!(sent["providerConfirmation"]["provider"], "meta", "{sent}");
    assert!(sent["providerConfirmation"].get("segments").is_none());
    let request = &h.whatsapp.received_requests().await.unwrap()[0];
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["template"]["language"]["code"], "pt_BR");
}
