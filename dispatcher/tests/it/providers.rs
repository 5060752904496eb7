//! A second SMS provider (Vonage), routes by country, and a circuit breaker
//! that moves the traffic to the next provider while one keeps failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dispatcher::config::{BreakerConfig, SmsConfig};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::dispatch::{created, form, Harness, VONAGE_KEY, VONAGE_SECRET};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn vonage_answer(status: &str, id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{"to": "50762647737", "message-id": id, "status": status, "error-text": format!("status {status}")}]
    }))
}

async fn vonage_answers(h: &Harness, first: Vec<ResponseTemplate>, then: ResponseTemplate) {
    for answer in first {
        Mock::given(method("POST"))
            .and(path("/sms/json"))
            .respond_with(answer)
            .up_to_n_times(1)
            .mount(&h.vonage)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(then)
        .mount(&h.vonage)
        .await;
}

/// Which SMS providers, in order.
enum Providers {
    VonageOnly,
    TwilioThenVonage,
}

/// A dispatcher sending through `providers` with `routes`.
async fn start(h: &Harness, providers: Providers, routes: &str, breaker: BreakerConfig) {
    let mut config = h.dispatcher_config();
    let providers = match providers {
        Providers::VonageOnly => vec![h.vonage_config()],
        Providers::TwilioThenVonage => vec![h.twilio_config(), h.vonage_config()],
    };
    config.sms = SmsConfig {
        routes: dispatcher::config::parse_routes(routes, &providers).unwrap(),
        providers,
        breaker,
    };
    h.start_dispatcher_with(config).await;
}

#[tokio::test]
async fn vonage_takes_its_form_and_a_spanish_text_goes_as_unicode() {
    let h = Harness::new().await;
    vonage_answers(&h, vec![], vonage_answer("0", "0A0000001234ABCD")).await;
    start(&h, Providers::VonageOnly, "", BreakerConfig::default()).await;
    let (project, flow) = h.project_and_flow(json!({"language": "es"})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(sent["providerConfirmation"]["provider"], "vonage");
    assert_eq!(sent["providerConfirmation"]["messageId"], "0A0000001234ABCD");
    let request = form(&h.vonage.received_requests().await.unwrap()[0]);
    assert_eq!(request["api_key"], VONAGE_KEY);
    assert_eq!(request["api_secret"], VONAGE_SECRET);
    assert_eq!(request["from"], "Acme");
    assert_eq!(request["to"], "50762647737", "E.164 without +");
    assert!(request["text"].starts_with("Tu código de verificación"));
    assert_eq!(request["type"], "unicode", "'ó' is not GSM-7");

    let english = h
        .create_id(&project, &flow, "62647738", json!({"language": "en"}))
        .await;
    h.settled(&english).await;
    let request = form(&h.vonage.received_requests().await.unwrap()[1]);
    assert!(!request.contains_key("type"), "plain GSM-7 text");
}

#[tokio::test]
async fn a_throttled_vonage_is_retried_and_a_permanent_status_fails_the_validation() {
    let h = Harness::new().await;
    vonage_answers(&h, vec![vonage_answer("1", "")], vonage_answer("0", "0A00000000000002")).await;
    start(&h, Providers::VonageOnly, "", BreakerConfig::default()).await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(
        (
            sent["status"].as_str(),
            sent["providerConfirmation"]["attempts"].as_u64()
        ),
        (Some("sent"), Some(2)),
        "status 1 (throttled) is transient: {sent}"
    );

    h.vonage.reset().await;
    vonage_answers(&h, vec![], vonage_answer("3", "")).await;
    let id = h.create_id(&project, &flow, "62647738", json!({})).await;
    let failed = h.settled(&id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failedReason"], "provider_rejected");
    assert_eq!(failed["providerConfirmation"]["errorCode"], "3");
    assert_eq!(h.vonage.received_requests().await.unwrap().len(), 1, "no retry");
}

#[tokio::test]
async fn a_country_goes_to_its_route_and_the_others_to_the_first_preference() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMroute")).await;
    vonage_answers(&h, vec![], vonage_answer("0", "0A00000000000057")).await;
    start(&h, Providers::TwilioThenVonage, "+57=vonage", BreakerConfig::default()).await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let colombia = h
        .create_id(&project, &flow, "300 123 4567", json!({"countryCode": "+57"}))
        .await;
    let panama = h.create_id(&project, &flow, "62647737", json!({})).await;
    assert_eq!(h.settled(&colombia).await["providerConfirmation"]["provider"], "vonage");
    assert_eq!(h.settled(&panama).await["providerConfirmation"]["provider"], "twilio");
    assert_eq!(
        form(&h.vonage.received_requests().await.unwrap()[0])["to"],
        "573001234567"
    );
}

#[tokio::test]
async fn a_failing_provider_is_skipped_while_its_breaker_is_open_and_taken_back_after() {
    let h = Harness::new().await;
    let down = testkit::dispatch::Stamped::new(ResponseTemplate::new(500));
    let twilio_stamps = down.at.clone();
    let twilio_down = Mock::given(method("POST"))
        .respond_with(down)
        .mount_as_scoped(&h.twilio)
        .await;
    vonage_answers(&h, vec![], vonage_answer("0", "0A000000000000BB")).await;
    let breaker = BreakerConfig {
        failures: 2,
        open_for: Duration::from_millis(1500),
    };
    let open_for = breaker.open_for;
    start(&h, Providers::TwilioThenVonage, "", breaker).await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let mut providers: Vec<Value> = Vec::new();
    for n in 0..6 {
        let id = h.create_id(&project, &flow, &format!("6264{n:04}"), json!({})).await;
        let sent = h.settled(&id).await;
        assert_eq!(sent["status"], "sent", "{sent}");
        providers.push(sent["providerConfirmation"]["provider"].clone());
    }
    assert!(
        providers.iter().all(|p| p == "vonage"),
        "every code went out through Vonage: {providers:?}"
    );
    // The breaker opens after the second failure; from then on Twilio gets
    // at most one probe per open period, however slowly the sends went by.
    let stamps = testkit::dispatch::Stamped::stamps(&twilio_stamps);
    assert!(
        stamps.len() >= 2,
        "Twilio was tried until its breaker opened: {stamps:?}"
    );
    for pair in stamps[1..].windows(2) {
        let gap = (pair[1] - pair[0]).to_std().unwrap_or_default();
        assert!(
            gap + Duration::from_millis(50) >= open_for,
            "Twilio was tried {gap:?} after a failure that opened its breaker: {stamps:?}"
        );
    }

    // Twilio recovers; after the breaker's open time a probe succeeds and it takes the traffic back.
    drop(twilio_down);
    h.sms_answers([], created("SMback")).await;
    let back = testkit::eventually(Duration::from_secs(15), "Twilio to take the traffic back", || async {
        let n = h.count("phone_validations").await;
        let id = h.create_id(&project, &flow, &format!("6265{n:04}"), json!({})).await;
        let sent = h.settled(&id).await;
        (sent["providerConfirmation"]["provider"] == "twilio").then_some(sent)
    })
    .await;
    assert_eq!(back["providerConfirmation"]["messageId"], "SMback");
    let metrics = shared::ops::prometheus().render();
    assert!(
        metrics.contains("provider_breaker_state{provider=\"twilio\"} 0"),
        "{metrics}"
    );
}
