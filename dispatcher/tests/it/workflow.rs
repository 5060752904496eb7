//! Workflows (docs/contract.md §14): a flow's `channels` in order, the next one
//! sending the *same* code when the channel timeout passes with the
//! validation open, at once when the previous one failed for good (an
//! `undelivered` receipt, a permanent refusal), or when the client asks
//! (`next-channel`); `providerConfirmation.history` lists every send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use testkit::dispatch::{code_in, code_in_twiml, created, twilio_calls_path, twilio_path, Harness};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// The Twilio stand-in answers messages with `sms` and calls with `call`.
pub(crate) async fn twilio_answers(h: &Harness, sms: ResponseTemplate, call: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(twilio_path()))
        .respond_with(sms)
        .mount(&h.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(twilio_calls_path()))
        .respond_with(call)
        .mount(&h.twilio)
        .await;
}

/// Waits until the stand-in placed `n` calls; returns them.
pub(crate) async fn calls(h: &Harness, n: usize, within: Duration) -> Vec<std::collections::HashMap<String, String>> {
    testkit::eventually(within, "the voice call", || async {
        let calls = h.call_requests().await;
        (calls.len() >= n).then_some(calls)
    })
    .await
}

/// Waits until the validation's current channel is `channel`.
pub(crate) async fn on_channel(h: &Harness, id: &str, channel: &str) -> Value {
    testkit::eventually(Duration::from_secs(20), "the next channel recorded", || async {
        let validation = h.validation(id).await;
        (validation["providerConfirmation"]["channel"] == channel).then_some(validation)
    })
    .await
}

pub(crate) const SMS_THEN_VOICE: fn(u32) -> Value =
    |timeout| json!({"channels": ["sms", "voice"], "channelTimeoutSeconds": timeout, "resendCooldownSeconds": 0});

#[tokio::test]
async fn an_undelivered_sms_moves_on_to_a_call_with_the_same_code_once() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMflow1"), created("CAflow1")).await;
    let (id, sent) = h.send_one(SMS_THEN_VOICE(900), "62647737", json!({})).await;
    assert_eq!(sent["providerConfirmation"]["channel"], "sms", "{sent}");
    assert!(h.call_requests().await.is_empty(), "the call waits for the timeout");

    // A landline-style failure: no other SMS provider would help, the call may.
    let undelivered = [
        ("MessageSid", "SMflow1"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30006"),
    ];
    assert_eq!(h.twilio_status(&undelivered).await, 200);
    let calls = calls(&h, 1, Duration::from_secs(20)).await;
    let sms_code = code_in(&h.sms_requests().await[0]["Body"]);
    assert_eq!(code_in_twiml(&calls[0]["Twiml"]), sms_code, "the same code");

    let moved = on_channel(&h, &id, "voice").await;
    let confirmation = &moved["providerConfirmation"];
    assert_eq!(confirmation["messageId"], "CAflow1");
    assert_eq!(confirmation["failover"], "channel_1");
    let history = confirmation["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{confirmation}");
    assert_eq!(
        (history[0]["channel"].as_str(), history[0]["deliveryStatus"].as_str()),
        (Some("sms"), Some("undelivered"))
    );
    assert_eq!(
        (history[1]["channel"].as_str(), history[1]["messageId"].as_str()),
        (Some("voice"), Some("CAflow1"))
    );

    // The same receipt again, and the client asking: nothing left to send.
    assert_eq!(h.twilio_status(&undelivered).await, 200);
    let next = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(next.status, 409, "{:?}", next.body);
    assert_eq!(next.message(), "409:no_next_channel");
    h.wait_outbox_empty().await;
    assert_eq!(h.call_requests().await.len(), 1, "one call, never two");
    let valid = h.validate("62647737", json!(sms_code)).await;
    assert_eq!(valid.status, 200, "{:?}", valid.body);
}

#[tokio::test]
async fn the_channel_timeout_sends_the_next_channel_when_the_code_is_still_open() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMflow2"), created("CAflow2")).await;
    let (id, sent) = h.send_one(SMS_THEN_VOICE(15), "62647737", json!({})).await;
    let sent_at =
        chrono::DateTime::parse_from_rfc3339(sent["providerConfirmation"]["sentAt"].as_str().unwrap()).unwrap();
    let calls = calls(&h, 1, Duration::from_secs(60)).await;
    let called_at = chrono::Utc::now();
    assert!(
        called_at.signed_duration_since(sent_at) >= chrono::Duration::seconds(15),
        "not before the timeout"
    );
    let sms_code = code_in(&h.sms_requests().await[0]["Body"]);
    assert_eq!(code_in_twiml(&calls[0]["Twiml"]), sms_code, "the same code");
    let moved = on_channel(&h, &id, "voice").await;
    assert_eq!(moved["providerConfirmation"]["failover"], "channel_1");
    assert_eq!(moved["providerConfirmation"]["history"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_closed_validation_answers_next_channel_as_validate_would() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMflow3"), created("CAflow3")).await;
    let (id, _) = h.send_one(SMS_THEN_VOICE(900), "62647737", json!({})).await;
    let code = code_in(&h.sms_requests().await[0]["Body"]);
    assert_eq!(h.validate("62647737", json!(code)).await.status, 200);
    let next = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(next.status, 409, "{:?}", next.body);
    assert_eq!(next.message(), "409:phone_validation_already_validated");
    // A send-only flow has no next channel at all.
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let id = h.create_id(&project, &flow, "62647739", json!({})).await;
    h.settled(&id).await;
    let next = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(next.message(), "409:no_next_channel", "{:?}", next.body);
    h.wait_outbox_empty().await;
    assert!(h.call_requests().await.is_empty(), "no call");
}

#[tokio::test]
async fn next_channel_moves_on_now_within_the_send_limits() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMflow4"), created("CAflow4")).await;
    let (id, _) = h.send_one(SMS_THEN_VOICE(900), "62647737", json!({})).await;
    let next = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    let calls = calls(&h, 1, Duration::from_secs(20)).await;
    let sms_code = code_in(&h.sms_requests().await[0]["Body"]);
    assert_eq!(code_in_twiml(&calls[0]["Twiml"]), sms_code);
    on_channel(&h, &id, "voice").await;
    let again = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(again.message(), "409:no_next_channel");

    // With a cooldown, the next channel waits like a resend would.
    let (project, flow) = h
        .project_and_flow(
            json!({"channels": ["sms", "voice"], "channelTimeoutSeconds": 900, "resendCooldownSeconds": 300}),
        )
        .await;
    let id = h.create_id(&project, &flow, "62647738", json!({})).await;
    h.settled(&id).await;
    let cooled = h
        .post(&format!("/v2/phone-validations/{id}/next-channel"), json!({}))
        .await;
    assert_eq!(cooled.status, 409, "{:?}", cooled.body);
    assert_eq!(cooled.message(), "409:otp_recently_sent");
    assert!(cooled.headers.contains_key("retry-after"));
    let missing = h
        .post("/v2/phone-validations/0123456789abcdef01234567/next-channel", json!({}))
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_channel_that_refuses_for_good_moves_on_at_once() {
    let h = Harness::new().await;
    let refused =
        ResponseTemplate::new(400).set_body_json(json!({"code": 21211, "message": "Invalid 'To' Phone Number"}));
    twilio_answers(&h, refused, created("CAflow5")).await;
    let (id, _) = h.send_one(SMS_THEN_VOICE(900), "62647737", json!({})).await;
    calls(&h, 1, Duration::from_secs(20)).await;
    let moved = on_channel(&h, &id, "voice").await;
    assert_eq!(moved["status"], "sent", "{moved}");
    let history = moved["providerConfirmation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{moved}");
    assert_eq!(history[0]["channel"], "sms");
    assert_eq!(history[0]["deliveryStatus"], "failed");
    assert_eq!(history[1]["channel"], "voice");
    assert_eq!(history[1]["messageId"], "CAflow5");
    assert_eq!(h.sms_requests().await.len(), 1, "a refused SMS is not retried");
}

/// Ready messages in the dispatch queue and the delay tiers of the test
/// dispatcher's retry schedule and lease (where a copy that found the step
/// held waits; the workflow's own timer waits in its 15-minute tier).
async fn dispatch_backlog(h: &Harness) -> Option<u32> {
    let queue = h.topology.dispatch_queue();
    let delays = [Duration::from_secs(1), Duration::from_secs(3)];
    let mut names = vec![queue.clone()];
    for delay in delays {
        names.push(shared::amqp::Topology::retry_queue(
            &queue,
            shared::amqp::retry::tier_ttl(delay),
        ));
    }
    let mut total = 0;
    for name in names {
        total += h.ready_in(name.as_str()).await?;
    }
    Some(total)
}

#[tokio::test]
async fn a_step_delivered_five_times_places_one_call() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMflow6"), created("CAflow6")).await;
    let (id, _) = h.send_one(SMS_THEN_VOICE(900), "62647737", json!({})).await;
    h.wait_outbox_empty().await;
    let step = json!({
        "eventId": shared::ObjectId::new(), "validationId": id, "cause": "channel_1",
        "occurredAt": "2026-01-01T00:00:00.000Z"});
    h.publish_copies("otp.failover", &step, 5).await;
    calls(&h, 1, Duration::from_secs(20)).await;
    on_channel(&h, &id, "voice").await;
    // Copies that found the step held come back after the lease: wait until
    // every copy is gone from the queue and its delay tiers.
    testkit::eventually(Duration::from_secs(30), "every copy handled", || async {
        (dispatch_backlog(&h).await? == 0).then_some(())
    })
    .await;
    assert_eq!(h.call_requests().await.len(), 1, "five copies, one call");
    let history = h.validation(&id).await["providerConfirmation"]["history"].clone();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
}

#[tokio::test]
async fn a_lost_timer_is_parked_again_by_the_redelivered_request() {
    let h = Harness::new().await;
    twilio_answers(&h, created("SMflow7"), created("CAflow7")).await;
    let (id, _) = h.send_one(SMS_THEN_VOICE(15), "62647737", json!({})).await;
    // The timer waits in the 15 s tier. Lose it, as a dispatcher dying
    // between recording the send and parking the timer would.
    let tier = shared::amqp::Topology::retry_queue(
        &h.topology.dispatch_queue(),
        shared::amqp::retry::tier_ttl(Duration::from_secs(15)),
    );
    testkit::eventually(Duration::from_secs(10), "the timer parked", || async {
        (h.ready_in(&tier).await? == 1).then_some(())
    })
    .await;
    let channel = h.amqp.create_channel().await.unwrap();
    channel
        .queue_purge(tier.as_str().into(), Default::default())
        .await
        .unwrap();
    assert_eq!(h.ready_in(&tier).await, Some(0), "the timer is gone");
    // The broker redelivers the request whose handler died before its ack.
    let event =
        json!({"eventId": shared::ObjectId::new(), "validationId": id, "occurredAt": "2026-01-01T00:00:00.000Z"});
    h.publish_copies("otp.requested", &event, 1).await;
    let calls = calls(&h, 1, Duration::from_secs(60)).await;
    let sms_code = code_in(&h.sms_requests().await[0]["Body"]);
    assert_eq!(code_in_twiml(&calls[0]["Twiml"]), sms_code, "the same code");
    assert_eq!(h.sms_requests().await.len(), 1, "the SMS is not sent again");
    on_channel(&h, &id, "voice").await;
}
