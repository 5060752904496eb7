//! Codes delivered through the providers' stand-ins, with retries and nothing lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::Duration;
use testkit::dispatch::{code_in, created, form, twilio_path, Harness, FROM};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn the_seed_example_goes_from_create_to_sms_to_validated() {
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .and(path(twilio_path()))
        .respond_with(created("SM0123456789abcdef0123456789abcdef"))
        .expect(1)
        .mount(&h.twilio)
        .await;
    h.start_dispatcher().await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;

    let sent = h.settled(&id).await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["providerConfirmation"]["provider"], "twilio");
    assert_eq!(
        sent["providerConfirmation"]["messageId"],
        "SM0123456789abcdef0123456789abcdef"
    );
    assert_eq!(sent["providerConfirmation"]["attempts"], 1);
    assert_eq!(sent["providerConfirmation"]["sent"], true);
    assert!(sent["otp"].as_str().unwrap().starts_with("$2b$"));

    let requests = h.twilio.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let fields = form(&requests[0]);
    assert_eq!(fields["To"], "+50762647737");
    assert_eq!(fields["From"], FROM);
    let code = code_in(&fields["Body"]);
    assert_eq!(code.len(), 6);
    // No language anywhere: the number's country picks (+507 is Panama).
    assert_eq!(
        fields["Body"],
        format!("Tu código de verificación de Verifik Client es {code}. Vence en 10 minutos.")
    );
    let auth = requests[0].headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("Basic "));

    let validated = h.validate("62647737", json!(code)).await;
    assert_eq!(validated.status, 200, "{:?}", validated.body);
    let validated = validated.body;
    assert_eq!(validated["data"]["status"], "validated");

    // What an operator sees (the dispatcher runs in this process).
    let metrics = shared::ops::prometheus().render();
    assert!(
        metrics.contains("provider_requests_total{provider=\"twilio\",outcome=\"ok\"}"),
        "{metrics}"
    );
    let dispatch_queue = format!("queue_messages{{queue=\"{}\"}}", h.topology.dispatch_queue());
    testkit::eventually(
        Duration::from_secs(15),
        "the dispatch queue's depth in /metrics",
        || async {
            shared::ops::prometheus()
                .render()
                .contains(&dispatch_queue)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn spanish_messages_are_written_in_spanish() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMes")).await;
    let settings = json!({"language": "es", "otpLength": 4, "otpExpiresInSeconds": 300});
    h.send_one(settings, "62647737", json!({})).await;
    let body = form(&h.twilio.received_requests().await.unwrap()[0])["Body"].clone();
    let code = code_in(&body);
    assert_eq!(code.len(), 4);
    assert_eq!(
        body,
        format!("Tu código de verificación de Verifik Client es {code}. Vence en 5 minutos.")
    );
}

#[tokio::test]
async fn two_server_errors_then_success_send_once_in_three_attempts() {
    let h = Harness::new().await;
    let failing = ResponseTemplate::new(500);
    h.sms_answers([failing.clone(), failing], created("SMthird")).await;
    let (_, sent) = h.send_one(json!({}), "62647737", json!({})).await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["providerConfirmation"]["attempts"], 3);
    assert_eq!(sent["providerConfirmation"]["messageId"], "SMthird");
    assert_eq!(h.twilio.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let h = Harness::new().await;
    let throttled = ResponseTemplate::new(429)
        .insert_header("Retry-After", "2")
        .set_body_json(json!({"code": 20429, "message": "Too Many Requests"}));
    h.sms_answers([throttled], created("SMlater")).await;
    let (_, validation) = h.send_one(json!({}), "62647737", json!({})).await;
    assert_eq!(h.sms_requests().await.len(), 2);
    let sent: chrono::DateTime<chrono::Utc> = validation["providerConfirmation"]["sentAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let created_at: chrono::DateTime<chrono::Utc> = validation["createdAt"].as_str().unwrap().parse().unwrap();
    assert!(
        (sent - created_at).num_milliseconds() >= 2000,
        "the retry waited {} ms",
        (sent - created_at).num_milliseconds()
    );
}

#[tokio::test]
async fn an_invalid_number_fails_at_once_with_the_providers_error() {
    let h = Harness::new().await;
    let invalid = ResponseTemplate::new(400).set_body_json(
        json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
    );
    h.sms_answers([], invalid).await;
    let (_, failed) = h.send_one(json!({}), "62647737", json!({})).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failedReason"], "provider_rejected");
    assert_eq!(failed["providerConfirmation"]["errorCode"], "21211");
    assert_eq!(failed["providerConfirmation"]["sent"], false);
    assert_eq!(failed["providerConfirmation"]["attempts"], 1);
    let refused = h.validate("62647737", json!("123456")).await;
    assert_eq!(
        (refused.status.as_u16(), refused.message()),
        (409, "409:otp_send_failed")
    );
    // The failed event reaches the webhook queue.
    let events = testkit::eventually(Duration::from_secs(10), "the failed event", || async {
        let events = testkit::drain(&h.amqp, &h.topology.webhook_queue()).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    let event: serde_json::Value = serde_json::from_slice(&events[0].delivery.data).unwrap();
    assert_eq!(event["type"], "phone_validation_failed");
    assert_eq!(event["data"]["failedReason"], "provider_rejected");
    assert_eq!(h.twilio.received_requests().await.unwrap().len(), 1, "no retry");
}

#[tokio::test]
async fn a_provider_down_past_expiry_fails_the_validation_and_sends_nothing_late() {
    let h = Harness::new().await;
    let down = testkit::dispatch::Stamped::new(ResponseTemplate::new(503));
    let at = down.at.clone();
    Mock::given(method("POST")).respond_with(down).mount(&h.twilio).await;
    // Long enough that the first try happens before expiry even on a loaded
    // machine (the test asserts that it retried, then gave up at expiry).
    let expires = chrono::Utc::now() + chrono::Duration::seconds(8);
    let extra = json!({"expiresAt": shared::time::format(&expires)});
    let (_, failed) = h.send_one(json!({}), "62647737", extra).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failedReason"], "provider_unavailable");
    assert_eq!(failed["providerConfirmation"]["errorCode"], "503");
    let stamps = at.lock().unwrap().clone();
    assert!(stamps.len() >= 2, "it retried");
    // Parsed back from the API, the expiry has millisecond precision.
    let expires: chrono::DateTime<chrono::Utc> = failed["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!(
        stamps.iter().all(|t| *t < expires),
        "a request went out after expiry: {stamps:?} vs {expires}"
    );
    // Once failed, the validation is final: a late retry is refused at the source.
    assert_eq!(
        failed["providerConfirmation"]["attempts"].as_u64().unwrap() as usize,
        stamps.len()
    );
}

#[tokio::test]
async fn the_same_message_delivered_five_times_sends_one_sms() {
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .respond_with(created("SMonce"))
        .mount(&h.twilio)
        .await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    // Wait for the API's own event, then publish four copies of it.
    h.wait_outbox_empty().await;
    let event =
        json!({"eventId": shared::ObjectId::new(), "validationId": id, "occurredAt": "2026-01-01T00:00:00.000Z"});
    h.publish_copies("otp.requested", &event, 4).await;
    h.start_dispatcher().await;
    h.settled(&id).await;
    testkit::eventually(Duration::from_secs(10), "the queue to drain", || async {
        (h.ready_in(h.topology.dispatch_queue().as_str()).await? == 0).then_some(())
    })
    .await;
    assert_eq!(h.twilio.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_expired_validation_is_never_sent() {
    let h = Harness::new().await;
    h.expect_no_messages().await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    sqlx::query("UPDATE phone_validations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(&id)
        .execute(&h.pool)
        .await
        .unwrap();
    h.start_dispatcher().await;
    let failed = h.settled(&id).await;
    assert_eq!(
        (failed["status"].as_str(), failed["failedReason"].as_str()),
        (Some("failed"), Some("expired"))
    );
}

#[tokio::test]
async fn test_numbers_and_gateway_none_send_nothing_and_the_test_code_validates() {
    let h = Harness::new().await;
    h.expect_no_messages().await;
    h.start_dispatcher().await;
    let (project, flow) = h
        .project_and_flow(json!({"testNumbers": {"+50762647737": "024680"}}))
        .await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["providerConfirmation"]["provider"], "test");
    assert_eq!(sent["providerConfirmation"]["sent"], false);
    assert_eq!(h.validate("62647737", json!("024680")).await.status, 200);

    let id = h
        .create_id(&project, &flow, "62647738", json!({"phoneGateway": "none"}))
        .await;
    let sent = h.settled(&id).await;
    assert_eq!(
        (
            sent["status"].as_str(),
            sent["providerConfirmation"]["provider"].as_str()
        ),
        (Some("sent"), Some("none"))
    );
}

#[tokio::test]
async fn whatsapp_carries_the_code_in_the_template_and_falls_back_to_sms() {
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .and(path("/v21.0/1234567890/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.ABC"}]})),
        )
        .up_to_n_times(1)
        .mount(&h.whatsapp)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "Recipient is not a valid WhatsApp user", "type": "OAuthException", "code": 131026}})))
        .mount(&h.whatsapp)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("SMfallback"))
        .mount(&h.twilio)
        .await;
    h.start_dispatcher().await;
    let (project, flow) = h
        .project_and_flow(json!({"phoneGateway": "whatsapp", "smsFallback": true, "resendCooldownSeconds": 0}))
        .await;

    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(sent["providerConfirmation"]["provider"], "meta");
    assert_eq!(sent["providerConfirmation"]["messageId"], "wamid.ABC");
    let request = &h.whatsapp.received_requests().await.unwrap()[0];
    assert_eq!(request.headers.get("authorization").unwrap(), "Bearer wa-token");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["to"], "50762647737");
    assert_eq!(body["template"]["name"], "verification_code");
    assert_eq!(body["template"]["language"]["code"], "es", "+507 speaks Spanish");
    let code = body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(body["template"]["components"][1]["sub_type"], "url");
    assert_eq!(body["template"]["components"][1]["index"], "0");
    assert_eq!(
        body["template"]["components"][1]["parameters"][0]["text"],
        code.as_str()
    );
    assert_eq!(h.validate("62647737", json!(code)).await.status, 200);

    let id = h.create_id(&project, &flow, "62647738", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["providerConfirmation"]["provider"], "twilio");
    assert_eq!(sent["providerConfirmation"]["messageId"], "SMfallback");
    let sms = form(&h.twilio.received_requests().await.unwrap()[0]);
    assert_eq!(sms["To"], "+50762647738");
}

#[tokio::test]
async fn two_dispatchers_on_one_queue_send_each_code_once() {
    let h = Harness::new().await;
    Mock::given(method("POST"))
        .respond_with(created("SMpair"))
        .mount(&h.twilio)
        .await;
    h.start_dispatcher().await;
    h.start_dispatcher().await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(h.create_id(&project, &flow, &format!("6264{:04}", n), json!({})).await);
    }
    for id in &ids {
        assert_eq!(h.settled(id).await["status"], "sent");
    }
    let requests = h.twilio.received_requests().await.unwrap();
    let mut to: Vec<String> = requests.iter().map(|r| form(r)["To"].clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!((requests.len(), to.len()), (60, 60));
}
