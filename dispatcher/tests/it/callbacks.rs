//! Delivery you can see and a failover that finds a way (docs/contract.md §11):
//! the providers' signed status callbacks land in `providerConfirmation`,
//! never backwards, and an undelivered code goes out once more, the same
//! code, by the next provider or by SMS instead of WhatsApp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::routes::callbacks::signatures::sign;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::api::{
    PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN, VONAGE_SIGNATURE_SECRET, WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN,
};
use testkit::dispatch::{code_in, created, form, Harness};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const TWILIO_STATUS: &str = "/callbacks/twilio/status";

/// Twilio's callback for `sid`, signed over `url` (the real one unless a test forges it).
async fn twilio_callback(h: &Harness, params: &[(&str, &str)], signature: Option<String>) -> reqwest::StatusCode {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let signature = signature
        .unwrap_or_else(|| sign::twilio(TWILIO_AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{TWILIO_STATUS}"), &params));
    h.http
        .post(format!("{}{TWILIO_STATUS}", h.base))
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap()
        .status()
}

async fn sent_by_twilio(h: &Harness, sid: &str, phone: &str) -> (String, Value) {
    h.sms_answers([], created(sid)).await;
    h.send_one(json!({"resendCooldownSeconds": 0}), phone, json!({})).await
}

#[tokio::test]
async fn twilio_callbacks_are_checked_recorded_and_never_go_back() {
    let h = Harness::new().await;
    let (id, _) = sent_by_twilio(&h, "SMcallback1", "62647737").await;
    let delivered = [("MessageSid", "SMcallback1"), ("MessageStatus", "delivered")];
    let wrong = sign::twilio("wrong-token", &format!("{PUBLIC_BASE_URL}{TWILIO_STATUS}"), &[]);
    let other_url = sign::twilio(
        TWILIO_AUTH_TOKEN,
        &format!("{PUBLIC_BASE_URL}/somewhere/else"),
        &delivered
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    );
    for (signature, what) in [
        (Some(wrong), "wrong token"),
        (Some(other_url), "another URL"),
        (Some(String::new()), "empty"),
    ] {
        assert_eq!(twilio_callback(&h, &delivered, signature).await, 403, "{what}");
    }
    let unsigned = h
        .http
        .post(format!("{}{TWILIO_STATUS}", h.base))
        .form(&delivered)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403, "missing signature");
    assert_eq!(
        h.validation(&id).await["providerConfirmation"]["deliveryStatus"],
        "queued",
        "nothing changed"
    );

    assert_eq!(twilio_callback(&h, &delivered, None).await, 200);
    let late = [("MessageSid", "SMcallback1"), ("MessageStatus", "sent")];
    assert_eq!(twilio_callback(&h, &late, None).await, 200);
    let confirmation = h.validation(&id).await["providerConfirmation"].clone();
    assert_eq!(
        confirmation["deliveryStatus"], "delivered",
        "a late `sent` does not move it back"
    );
    assert!(confirmation["deliveredAt"].as_str().is_some());
    assert_eq!(twilio_callback(&h, &delivered, None).await, 200, "idempotent");
    let unknown = [("MessageSid", "SMnobody"), ("MessageStatus", "delivered")];
    assert_eq!(twilio_callback(&h, &unknown, None).await, 200, "unknown ids are fine");
}

#[tokio::test]
async fn meta_handshake_and_a_failed_whatsapp_message_falls_back_to_sms_with_the_same_code() {
    let h = Harness::new().await;
    let handshake = |token: &str| {
        format!(
            "{}/callbacks/whatsapp?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            h.base
        )
    };
    let ok = h.http.get(handshake(WHATSAPP_VERIFY_TOKEN)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(h.http.get(handshake("nope")).send().await.unwrap().status(), 403);

    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": [{"id": "wamid.FAIL"}]})))
        .mount(&h.whatsapp)
        .await;
    h.sms_answers([], created("SMfallback")).await;
    let settings = json!({"phoneGateway": "whatsapp", "smsFallback": true});
    let (id, sent) = h.send_one(settings, "62647737", json!({})).await;
    assert_eq!(sent["providerConfirmation"]["provider"], "meta");
    let whatsapp_body: Value = serde_json::from_slice(&h.whatsapp.received_requests().await.unwrap()[0].body).unwrap();
    let first_code = whatsapp_body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();

    let failed = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "statuses": [{"id": "wamid.FAIL", "status": "failed", "errors": [{"code": 131026, "title": "Message undeliverable"}]}]}}]}]});
    let body = serde_json::to_vec(&failed).unwrap();
    let post = |signature: String| {
        h.http
            .post(format!("{}/callbacks/whatsapp", h.base))
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    assert_eq!(post(sign::meta("not-the-secret", &body)).await.unwrap().status(), 403);
    assert_eq!(
        post(sign::meta(WHATSAPP_APP_SECRET, &body)).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(sign::meta(WHATSAPP_APP_SECRET, &body)).await.unwrap().status(),
        200,
        "a repeat"
    );
    let sms = testkit::eventually(Duration::from_secs(20), "the SMS failover", || async {
        h.sms_requests().await.into_iter().next()
    })
    .await;
    assert_eq!(code_in(&sms["Body"]), first_code, "the same code");
    let confirmation = testkit::eventually(Duration::from_secs(10), "the failover recorded", || async {
        let c = h.validation(&id).await["providerConfirmation"].clone();
        (c["provider"] == "twilio").then_some(c)
    })
    .await;
    assert_eq!(confirmation["failover"], "whatsapp_failed");
    assert_eq!(
        h.validate("62647737", json!(first_code)).await.status,
        200,
        "the first code validates"
    );
    assert_eq!(
        h.sms_requests().await.len(),
        1,
        "one failover per cause, however many reports"
    );
}

#[tokio::test]
async fn an_undelivered_sms_goes_once_through_the_next_provider_only_for_a_transient_cause() {
    let h = Harness::new().await;
    h.sms_answers([created("SMfirst"), created("SMsecond")], created("SMmore"))
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message-count": "1",
            "messages": [{"status": "0", "message-id": "0A00000000000FA1", "to": "50762647737"}]})))
        .mount(&h.vonage)
        .await;
    h.start_twilio_then_vonage().await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let unreachable = h.create_id(&project, &flow, "62647737", json!({})).await;
    h.settled(&unreachable).await;
    let landline = h.create_id(&project, &flow, "62647738", json!({})).await;
    h.settled(&landline).await;
    let first_code = code_in(&h.sms_requests().await[0]["Body"]);

    let report = |sid: &'static str, code: &'static str| {
        [
            ("MessageSid", sid),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", code),
        ]
    };
    assert_eq!(twilio_callback(&h, &report("SMfirst", "30003"), None).await, 200);
    assert_eq!(twilio_callback(&h, &report("SMsecond", "30006"), None).await, 200);
    let vonage = testkit::eventually(Duration::from_secs(20), "the failover through Vonage", || async {
        h.vonage.received_requests().await.unwrap().into_iter().next()
    })
    .await;
    let vonage = form(&vonage);
    assert_eq!(vonage["to"], "50762647737");
    assert_eq!(code_in(&vonage["text"]), first_code, "the same code");
    let confirmation = testkit::eventually(Duration::from_secs(10), "the failover recorded", || async {
        let c = h.validation(&unreachable).await["providerConfirmation"].clone();
        (c["provider"] == "vonage").then_some(c)
    })
    .await;
    assert_eq!(confirmation["messageId"], "0A00000000000FA1");

    // Vonage's receipt for the new message lands too (signed, form body).
    let mut receipt: Vec<(String, String)> = [
        ("messageId", "0A00000000000FA1"),
        ("status", "delivered"),
        ("err-code", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    receipt.push(("sig".into(), sign::vonage_md5(VONAGE_SIGNATURE_SECRET, &receipt)));
    let recorded = h
        .http
        .post(format!("{}/callbacks/vonage/status", h.base))
        .form(&receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(recorded.status(), 200);
    assert_eq!(
        h.validation(&unreachable).await["providerConfirmation"]["deliveryStatus"],
        "delivered"
    );
    receipt.last_mut().unwrap().1 = "0".repeat(32);
    let forged = h
        .http
        .get(format!("{}/callbacks/vonage/status", h.base))
        .query(&receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // The landline's permanent cause sent nothing more.
    assert_eq!(h.vonage.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        h.validation(&landline).await["providerConfirmation"]["provider"],
        "twilio"
    );
}
