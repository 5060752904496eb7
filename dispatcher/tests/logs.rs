//! The plain code appears in no log line at `info` or above, from the API or
//! the dispatcher (only the development `log` provider prints it, by design),
//! and neither does the phone number a provider quotes in its refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::sync::OnceLock;
use testkit::dispatch::{code_in, form, Harness};
use testkit::logs::{holds_digits_of, Captured};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn the_plain_code_never_reaches_the_logs() {
    let captured = captured();

    let h = Harness::new().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&h.twilio)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMlogs"})))
        .mount(&h.twilio)
        .await;
    h.start_dispatcher().await;
    let (project, flow) = h.project_and_flow(json!({"otpLength": 10})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    assert_eq!(h.settled(&id).await["status"], "sent");
    let body = form(&h.twilio.received_requests().await.unwrap()[1])["Body"].clone();
    let code = code_in(&body);
    assert_eq!(code.len(), 10);
    assert_eq!(h.validate("62647737", json!(code)).await.status, 200);

    let logs = captured.text();
    assert!(
        logs.contains("code sent"),
        "the dispatcher's lines were captured:\n{logs}"
    );
    assert!(logs.contains("phone validated"), "the API's lines were captured");
    assert!(!logs.contains(&code), "the code leaked into the logs:\n{logs}");
    assert!(!logs.contains("twilio-token"), "a secret leaked into the logs");
}

#[tokio::test]
async fn a_number_quoted_in_a_providers_refusal_never_reaches_the_logs() {
    let captured = captured();
    let h = Harness::new().await;
    // Twilio's own wording for 21211: it quotes the number it refused.
    let refusal = json!({
        "code": 21211,
        "message": "The 'To' number +50763918452 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400
    });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(refusal))
        .mount(&h.twilio)
        .await;
    h.start_dispatcher().await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let id = h.create_id(&project, &flow, "63918452", json!({})).await;
    let settled = h.settled(&id).await;
    assert_eq!(settled["status"], "failed", "{settled}");

    let logs = captured.text();
    assert!(
        logs.contains("giving up on this code") && logs.contains("21211"),
        "the refusal was logged, with its code:\n{logs}"
    );
    assert!(
        !holds_digits_of(&logs, "50763918452", 6),
        "the number leaked into the logs:\n{logs}"
    );
}

/// The log lines of this test binary's tests (one subscriber per process).
fn captured() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                // Timestamps' microseconds are digit runs of their own.
                .without_time()
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("first subscriber of this test binary");
            captured
        })
        .clone()
}
