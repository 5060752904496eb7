//! Voice calls (docs/contract.md §14): a call through Twilio's Calls API reads
//! the code digit by digit, twice, in the validation's language; a
//! voice-only flow takes fixed lines; the call's signed status callback
//! lands in `providerConfirmation`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::routes::callbacks::signatures::sign;
use serde_json::{json, Value};
use testkit::api::{PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN};
use testkit::dispatch::{code_in_twiml, created, twilio_calls_path, Harness, VOICE_FROM};
use wiremock::matchers::{method, path};
use wiremock::Mock;

/// A dispatcher whose Twilio stand-in accepts every call as `sid`, a voice
/// flow with `settings` over `phoneGateway: voice`, and one sent validation.
async fn called(h: &Harness, sid: &str, settings: Value, phone: &str, extra: Value) -> (String, Value) {
    Mock::given(method("POST"))
        .and(path(twilio_calls_path()))
        .respond_with(created(sid))
        .mount(&h.twilio)
        .await;
    let mut flow = json!({"phoneGateway": "voice", "resendCooldownSeconds": 0});
    for (k, v) in settings.as_object().unwrap() {
        flow[k] = v.clone();
    }
    h.send_one(flow, phone, extra).await
}

#[tokio::test]
async fn a_voice_flow_calls_a_fixed_line_and_reads_the_code_twice_digit_by_digit() {
    let h = Harness::new().await;
    // 300-1234 is a Panamanian fixed line: no SMS reaches it, a call does.
    let (id, sent) = called(&h, "CAvoice1", json!({}), "300-1234", json!({})).await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["phoneGateway"], "voice");
    let confirmation = &sent["providerConfirmation"];
    assert_eq!(confirmation["channel"], "voice");
    assert_eq!(confirmation["provider"], "twilio");
    assert_eq!(confirmation["messageId"], "CAvoice1");
    assert_eq!(confirmation["deliveryStatus"], "queued");
    let history = confirmation["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{confirmation}");
    assert_eq!(history[0]["channel"], "voice");
    assert_eq!(history[0]["messageId"], "CAvoice1");

    let calls = h.call_requests().await;
    assert_eq!(calls.len(), 1, "one call");
    assert!(h.sms_requests().await.is_empty(), "no SMS");
    let call = &calls[0];
    assert_eq!(call["To"], "+5073001234");
    assert_eq!(call["From"], VOICE_FROM);
    assert!(
        !call.contains_key("StatusCallback"),
        "no PUBLIC_BASE_URL in the dispatcher"
    );
    let twiml = &call["Twiml"];
    // No language anywhere: the number's country picks (+507 → es, said in es-MX).
    assert!(twiml.starts_with("<Response><Say language=\"es-MX\">"), "{twiml}");
    assert!(twiml.ends_with("</Say></Response>"), "{twiml}");
    assert_eq!(twiml.matches("<Say ").count(), 2, "said twice: {twiml}");
    let code = code_in_twiml(twiml);
    assert_eq!(code.len(), 6);
    assert!(
        twiml.contains(&code.chars().map(String::from).collect::<Vec<_>>().join(", ")),
        "digit by digit, with pauses: {twiml}"
    );

    let right = h
        .post(
            "/v2/phone-validations/validate",
            json!({"phone": "3001234", "countryCode": "+507", "otp": code}),
        )
        .await;
    assert_eq!(right.status, 200, "the code the call read validates: {:?}", right.body);
    assert_eq!(h.validation(&id).await["status"], "validated");
}

#[tokio::test]
async fn a_call_speaks_the_validations_language_and_sms_flows_still_refuse_fixed_lines() {
    let h = Harness::new().await;
    let (_, sent) = called(&h, "CAvoice2", json!({}), "62647737", json!({"language": "es"})).await;
    assert_eq!(sent["status"], "sent", "{sent}");
    let twiml = h.call_requests().await[0]["Twiml"].clone();
    assert!(twiml.starts_with("<Response><Say language=\"es-MX\">"), "{twiml}");

    let (project, sms_flow) = h.project_and_flow(json!({})).await;
    let refused = h
        .post(
            "/v2/phone-validations",
            testkit::api::TestApp::create_body(&project, &sms_flow, "300-1234"),
        )
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.message(), "400:invalid_phone");
    // A workflow that may also send an SMS still needs a mobile.
    let (project, workflow) = h.project_and_flow(json!({"channels": ["voice", "sms"]})).await;
    let refused = h
        .post(
            "/v2/phone-validations",
            testkit::api::TestApp::create_body(&project, &workflow, "300-1234"),
        )
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
}

#[tokio::test]
async fn call_status_callbacks_are_signed_and_map_to_delivery_statuses() {
    let h = Harness::new().await;
    let (id, _) = called(&h, "CAvoice3", json!({}), "62647737", json!({})).await;
    // Fails closed: unsigned, or signed for another URL, changes nothing.
    let completed = [("CallSid", "CAvoice3"), ("CallStatus", "completed")];
    let owned: Vec<(String, String)> = completed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let other_url = sign::twilio(
        TWILIO_AUTH_TOKEN,
        &format!("{PUBLIC_BASE_URL}/callbacks/twilio/status"),
        &owned,
    );
    for signature in [None, Some(other_url)] {
        let mut request = h
            .http
            .post(format!("{}/callbacks/twilio/voice", h.base))
            .form(&completed);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        assert_eq!(request.send().await.unwrap().status(), 403);
    }
    assert_eq!(
        h.validation(&id).await["providerConfirmation"]["deliveryStatus"],
        "queued"
    );
    assert_eq!(
        h.twilio_call_status(&[("CallSid", "CAvoice3"), ("CallStatus", "ringing")])
            .await,
        200
    );
    assert_eq!(
        h.validation(&id).await["providerConfirmation"]["deliveryStatus"],
        "sent"
    );
    assert_eq!(
        h.twilio_call_status(&[("CallSid", "CAvoice3"), ("CallStatus", "completed")])
            .await,
        200
    );
    let confirmation = h.validation(&id).await["providerConfirmation"].clone();
    assert_eq!(confirmation["deliveryStatus"], "delivered", "{confirmation}");
    assert_eq!(
        confirmation["history"][0]["deliveryStatus"], "delivered",
        "{confirmation}"
    );
    assert!(confirmation["deliveredAt"].is_string());

    // A call nobody answered is undelivered.
    let h = Harness::new().await;
    let (id, _) = called(&h, "CAvoice4", json!({}), "62647737", json!({})).await;
    assert_eq!(
        h.twilio_call_status(&[("CallSid", "CAvoice4"), ("CallStatus", "no-answer")])
            .await,
        200
    );
    let confirmation = h.validation(&id).await["providerConfirmation"].clone();
    assert_eq!(confirmation["deliveryStatus"], "undelivered", "{confirmation}");
}

#[tokio::test]
async fn a_call_says_the_flows_voice_template_for_its_locale() {
    let h = Harness::new().await;
    let templates = json!({"voice": {"en": "{app} here. Your code is {code}."}});
    let settings = json!({"language": "en", "templates": templates});
    let (id, sent) = called(&h, "CAtemplate", settings, "300-1234", json!({})).await;
    assert_eq!(sent["providerConfirmation"]["channel"], "voice", "{sent}");
    assert!(
        sent["providerConfirmation"].get("segments").is_none(),
        "a call has no SMS segments: {sent}"
    );
    let calls = h.call_requests().await;
    let twiml = &calls[0]["Twiml"];
    assert!(twiml.starts_with("<Response><Say language=\"en-US\">"), "{twiml}");
    assert_eq!(
        twiml.matches("Verifik Client here. Your code is ").count(),
        2,
        "the template, said twice: {twiml}"
    );
    let code = code_in_twiml(twiml);
    let right = h
        .post(
            "/v2/phone-validations/validate",
            json!({"phone": "3001234", "countryCode": "+507", "otp": code}),
        )
        .await;
    assert_eq!(right.status, 200, "{:?}", right.body);
    assert_eq!(h.validation(&id).await["status"], "validated");
}
