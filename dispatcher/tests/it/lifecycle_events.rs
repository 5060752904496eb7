//! Lifecycle events for webhook endpoints (docs/contract.md §13):
//! `phone_validation_sent` once per send that left through a provider
//! (failovers included), `_delivered` and `_undelivered` from receipts, each
//! written only when the client has an enabled endpoint subscribed to the
//! type and the validation's project.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::routes::callbacks::signatures::sign;
use serde_json::json;
use shared::domain::WebhookEventType;
use shared::events::{routing, LifecycleEvent};
use std::time::Duration;
use testkit::api::{PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN};
use testkit::dispatch::{created, Harness};
use testkit::lifecycle::{published, Published};
use testkit::webhook_endpoints::Endpoint;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const TWILIO_STATUS: &str = "/callbacks/twilio/status";

/// Posts Twilio's signed status callback for message `sid`.
async fn twilio_status(h: &Harness, sid: &str, status: &str, error_code: Option<&str>) {
    let mut params = vec![
        ("MessageSid".to_owned(), sid.to_owned()),
        ("MessageStatus".to_owned(), status.to_owned()),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode".to_owned(), code.to_owned()));
    }
    let signature = sign::twilio(TWILIO_AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{TWILIO_STATUS}"), &params);
    let answer = h
        .http
        .post(format!("{}{TWILIO_STATUS}", h.base))
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

/// The events of `kind` about validation `id`.
fn of<'a>(events: &'a [Published], kind: WebhookEventType, id: &str) -> Vec<&'a Published> {
    events
        .iter()
        .filter(|e| e.kind() == kind.as_str() && e.validation() == id)
        .collect()
}

/// The body is `LifecycleEvent`'s, on the type's routing key.
fn check_shape(event: &Published, kind: WebhookEventType, routing_key: &str) {
    assert_eq!(event.routing_key, routing_key);
    let decoded: LifecycleEvent = serde_json::from_value(event.body.clone()).expect("a LifecycleEvent");
    assert_eq!(decoded.kind, kind);
    assert_eq!(event.body["eventId"], decoded.event_id.as_str());
    let occurred = event.body["occurredAt"].as_str().unwrap();
    assert!(
        occurred.ends_with('Z') && occurred.len() == 24,
        "RFC 3339 with ms: {occurred}"
    );
}

#[tokio::test]
async fn a_send_and_its_receipts_emit_one_event_each_for_a_subscribed_endpoint() {
    let h = Harness::new().await;
    Endpoint::at_rest(&h.client).insert(&h.pool).await;
    h.sms_answers([], created("SMlife1")).await;
    let (id, sent) = h
        .send_one(json!({"resendCooldownSeconds": 0}), "62647737", json!({}))
        .await;
    assert_eq!(sent["status"], "sent");
    let events = published(&h).await;
    let sends = of(&events, WebhookEventType::Sent, &id);
    assert_eq!(sends.len(), 1, "one sent event: {events:?}");
    check_shape(sends[0], WebhookEventType::Sent, routing::SENT);

    twilio_status(&h, "SMlife1", "sent", None).await;
    twilio_status(&h, "SMlife1", "delivered", None).await;
    twilio_status(&h, "SMlife1", "delivered", None).await;
    twilio_status(&h, "SMlife1", "read", None).await;
    let events = published(&h).await;
    let delivered = of(&events, WebhookEventType::Delivered, &id);
    assert_eq!(
        delivered.len(),
        1,
        "a repeat and a later `read` emit nothing: {events:?}"
    );
    check_shape(delivered[0], WebhookEventType::Delivered, routing::DELIVERED);
    assert_eq!(events.len(), 1, "nothing else: {events:?}");
}

#[tokio::test]
async fn no_event_without_a_matching_enabled_endpoint_nor_for_a_send_that_left_nothing() {
    let h = Harness::new().await;
    let (other_project, _) = h.project_and_flow(json!({})).await;
    let endpoint = Endpoint::at_rest(&h.client);
    endpoint.clone().disabled().insert(&h.pool).await;
    endpoint
        .clone()
        .types(&["phone_validation_validated"])
        .insert(&h.pool)
        .await;
    endpoint.project(&other_project).insert(&h.pool).await;
    let stranger = testkit::create_client(&h.pool, "Someone else").await;
    Endpoint::at_rest(&stranger).insert(&h.pool).await;
    h.sms_answers([], created("SMquiet1")).await;
    let (id, sent) = h
        .send_one(json!({"resendCooldownSeconds": 0}), "62647737", json!({}))
        .await;
    assert_eq!(sent["providerConfirmation"]["provider"], "twilio");
    twilio_status(&h, "SMquiet1", "undelivered", Some("30006")).await;
    let events = published(&h).await;
    assert!(events.is_empty(), "no endpoint wants them: {events:?}");
    assert_eq!(
        h.validation(&id).await["providerConfirmation"]["deliveryStatus"],
        "undelivered"
    );

    // Subscribed, but a test number's send leaves through no provider.
    Endpoint::at_rest(&h.client).insert(&h.pool).await;
    let (project, flow) = h
        .project_and_flow(json!({"testNumbers": {"+50762640000": "024680"}}))
        .await;
    let test = h.create_id(&project, &flow, "62640000", json!({})).await;
    let settled = h.settled(&test).await;
    assert_eq!(settled["providerConfirmation"]["sent"], false, "{settled}");
    let events = published(&h).await;
    assert!(events.is_empty(), "nothing left, nothing emitted: {events:?}");
}

#[tokio::test]
async fn an_undelivered_sms_and_its_failover_emit_undelivered_then_a_second_sent() {
    let h = Harness::new().await;
    let sent_only: &[&str] = &["phone_validation_sent", "phone_validation_undelivered"];
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    Endpoint::at_rest(&h.client)
        .types(sent_only)
        .project(&project)
        .insert(&h.pool)
        .await;
    h.sms_answers([], created("SMroute1")).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message-count": "1",
            "messages": [{"status": "0", "message-id": "0A00000000000FB1", "to": "50762647737"}]})))
        .mount(&h.vonage)
        .await;
    h.start_twilio_then_vonage().await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    h.settled(&id).await;
    twilio_status(&h, "SMroute1", "undelivered", Some("30003")).await;
    testkit::eventually(Duration::from_secs(20), "the failover recorded", || async {
        (h.validation(&id).await["providerConfirmation"]["provider"] == "vonage").then_some(())
    })
    .await;
    let events = published(&h).await;
    let sends = of(&events, WebhookEventType::Sent, &id);
    assert_eq!(sends.len(), 2, "the first send and the failover: {events:?}");
    assert_ne!(sends[0].body["eventId"], sends[1].body["eventId"]);
    let undelivered = of(&events, WebhookEventType::Undelivered, &id);
    assert_eq!(undelivered.len(), 1, "{events:?}");
    check_shape(undelivered[0], WebhookEventType::Undelivered, routing::UNDELIVERED);
    assert_eq!(events.len(), 3, "{events:?}");
}
