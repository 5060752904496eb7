//! A workflow's later steps against the send limits (docs/contract.md §9,
//! §14): the fraud guard judges them (voice above all) and `perDay` counts
//! them; a refused step is not sent, joins the history as a failed send,
//! and no later step follows; `next-channel` refuses up front as a create
//! would. Under the limits every step is sent once, and counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::workflow::{calls, on_channel, twilio_answers, SMS_THEN_VOICE};
use serde_json::{json, Value};
use shared::store::fraud::GuardConfig;
use std::time::Duration;
use testkit::dispatch::{created, Harness};
use testkit::lifecycle::published;
use testkit::TestApp;

/// The client and flow of validation `id`.
async fn owners(h: &Harness, id: &str) -> (String, String) {
    sqlx::query_as("SELECT client_id, project_flow_id FROM phone_validations WHERE id = $1")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

/// Waits until the validation's history has `n` entries; returns the validation.
async fn with_history(h: &Harness, id: &str, n: usize) -> Value {
    testkit::eventually(Duration::from_secs(20), "the step in the history", || async {
        let validation = h.validation(id).await;
        let len = validation["providerConfirmation"]["history"]
            .as_array()
            .map_or(0, Vec::len);
        (len >= n).then_some(validation)
    })
    .await
}

/// Twilio's `undelivered` receipt of message `sid`: the workflow moves on at once.
async fn undelivered(h: &Harness, sid: &str) {
    let receipt = [
        ("MessageSid", sid),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30006"),
    ];
    assert_eq!(h.twilio_status(&receipt).await, 200);
}

/// The history's last entry is a step the limits refused with `code`, unsent.
fn refused_last(validation: &Value, channel: &str, code: &str) {
    let confirmation = &validation["providerConfirmation"];
    let last = confirmation["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["channel"], channel, "{confirmation}");
    assert_eq!(last["deliveryStatus"], "failed", "{confirmation}");
    assert_eq!(last["errorCode"], code, "{confirmation}");
    assert!(last["messageId"].is_null(), "{confirmation}");
    assert_eq!(validation["status"], "sent", "still open for the code sent");
    assert_eq!(confirmation["channel"], "sms", "the SMS is still the current message");
}

#[tokio::test]
async fn a_voice_step_to_a_prefix_the_guard_would_block_is_not_called_and_the_block_is_announced_once() {
    // The API's upkeep never ticks here: the dispatcher alone judges.
    let guard = GuardConfig {
        interval: Duration::from_secs(86_400),
        ..GuardConfig::default()
    };
    let app = TestApp::spawn_guarded(guard, None).await;
    app.wait_for_broker().await;
    let h = Harness::with_app(app).await;
    twilio_answers(&h, created("SMguard1"), created("CAguard1")).await;
    let settings = json!({"channels": ["sms", "voice", "whatsapp"], "channelTimeoutSeconds": 900,
                          "resendCooldownSeconds": 0});
    let (id, _) = h.send_one(settings, "62647737", json!({})).await;
    // Pumping on +507 626 judged five minutes ago, beside users elsewhere who type their codes.
    let (client, flow) = owners(&h, &id).await;
    sqlx::query(
        "INSERT INTO fraud_counters (client_id, project_flow_id, country_code, prefix, bucket, sent, validated)
         VALUES ($1, $2, '+507', '+507626', date_trunc('second', now()) - interval '300 seconds', 40, 0),
                ($1, $2, '+507', '+507671', date_trunc('second', now()) - interval '300 seconds', 100, 90)",
    )
    .bind(&client)
    .bind(&flow)
    .execute(&h.pool)
    .await
    .unwrap();

    undelivered(&h, "SMguard1").await;
    let refused = with_history(&h, &id, 2).await;
    refused_last(&refused, "voice", "fraud_guard_blocked");
    let events = published(&h).await;
    let blocked: Vec<_> = events.iter().filter(|e| e.kind() == "fraud_guard_blocked").collect();
    assert_eq!(blocked.len(), 1, "one event: {events:?}");
    assert_eq!(h.count("fraud_blocks WHERE prefix = '+507626'").await, 1);
    assert_eq!(h.count("fraud_blocks").await, 1, "the calling code is not blocked");

    // The client asks for the third channel: refused as a create would be.
    let next = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(next.message(), "403:fraud_guard_blocked", "{:?}", next.body);
    assert!(next.headers.contains_key("retry-after"));
    h.wait_outbox_empty().await;
    assert!(h.call_requests().await.is_empty(), "no call to a blocked prefix");
    let whatsapp = h.whatsapp.received_requests().await.unwrap_or_default();
    assert!(whatsapp.is_empty(), "no later step after a refusal");
    assert_eq!(h.sms_requests().await.len(), 1);
    assert_eq!(
        with_history(&h, &id, 2).await["providerConfirmation"]["history"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn per_day_used_up_by_later_steps_stops_the_next_step_and_refuses_next_channel() {
    let h = Harness::new().await;
    h.start_dispatcher().await;
    let calls_answer = created("CAday1");
    twilio_answers(&h, created("SMdayN"), calls_answer).await;
    // Each create's SMS its own id, so a receipt names one.
    for (n, sid) in ["SMday1", "SMday2"].iter().enumerate() {
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path(testkit::dispatch::twilio_path()))
            .respond_with(created(sid))
            .up_to_n_times(1)
            .with_priority(u8::try_from(n).unwrap() + 1)
            .mount(&h.twilio)
            .await;
    }
    let mut settings = SMS_THEN_VOICE(900);
    settings["rateLimits"] = json!({"perDay": 3});
    let (project, flow) = h.project_and_flow(settings).await;
    let first = h.create_id(&project, &flow, "62647737", json!({})).await;
    h.settled(&first).await;
    let second = h.create_id(&project, &flow, "62647738", json!({})).await;
    h.settled(&second).await;

    // The first user asks for a call: the day's third send.
    let next = h
        .post(&format!("/v2/phone-validations/{first}/next-channel"), json!({}))
        .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    calls(&h, 1, Duration::from_secs(20)).await;
    on_channel(&h, &first, "voice").await;
    assert_eq!(h.count("rate_limit_windows WHERE key = 'day' AND count = 3").await, 1);

    // The day is used up: a create, the client's next-channel and the
    // workflow's own move-on are all refused.
    let third = h
        .post(
            "/v2/phone-validations",
            TestApp::create_body(&project, &flow, "62647739"),
        )
        .await;
    assert_eq!(third.message(), "429:too_many_requests", "{:?}", third.body);
    let next = h
        .post(&format!("/v2/phone-validations/{second}/next-channel"), json!({}))
        .await;
    assert_eq!(next.message(), "429:too_many_requests", "{:?}", next.body);
    assert!(next.headers.contains_key("retry-after"));
    undelivered(&h, "SMday2").await;
    let refused = with_history(&h, &second, 2).await;
    refused_last(&refused, "voice", "too_many_requests");
    h.wait_outbox_empty().await;
    assert_eq!(h.call_requests().await.len(), 1, "the day's budget holds");
    assert_eq!(h.count("rate_limit_windows WHERE key = 'day' AND count = 3").await, 1);
}

#[tokio::test]
async fn a_workflow_under_the_limits_sends_each_step_once_and_counts_it() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMok1"), created("CAok1")).await;
    let mut settings = SMS_THEN_VOICE(900);
    settings["rateLimits"] = json!({"perDay": 100});
    settings["fraudGuard"] = json!("max");
    let (id, _) = h.send_one(settings, "62647737", json!({})).await;
    undelivered(&h, "SMok1").await;
    calls(&h, 1, Duration::from_secs(20)).await;
    let moved = on_channel(&h, &id, "voice").await;
    assert_eq!(moved["providerConfirmation"]["history"].as_array().unwrap().len(), 2);
    // The create and the call: two units of the day, two sends for the guard.
    assert_eq!(h.count("rate_limit_windows WHERE key = 'day' AND count = 2").await, 1);
    testkit::eventually(
        Duration::from_secs(20),
        "both sends in the guard's counters",
        || async {
            let sent: Option<i64> =
                sqlx::query_scalar("SELECT sum(sent)::bigint FROM fraud_counters WHERE prefix = '+507626'")
                    .fetch_one(&h.pool)
                    .await
                    .unwrap();
            (sent == Some(2)).then_some(())
        },
    )
    .await;
    h.wait_outbox_empty().await;
    assert_eq!(h.call_requests().await.len(), 1, "one call");
    assert_eq!(h.sms_requests().await.len(), 1, "one SMS");
    assert_eq!(h.count("fraud_blocks").await, 0);
}
