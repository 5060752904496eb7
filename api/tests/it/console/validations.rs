//! The Validations page: the search, and one validation's timeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{assert_accessible, signed_in, visit, LANES};
use crate::webhook_fixtures::{attempt, deliver, endpoint, message, URL};
use chrono::{DateTime, Duration as Span, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::TestApp;

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The body a webhook endpoint receives about validation `id`.
fn about(kind: &str, id: &str, status: &str) -> Value {
    json!({"type": kind, "object": {"_id": id, "status": status}})
}

#[tokio::test]
async fn a_validation_is_found_and_its_timeline_tells_its_story() {
    let _lane = LANES.acquire().await.expect("a lane");
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let other = app.sent_validation(&project, &flow, "62610009", "999999").await;
    let id = app.sent_validation(&project, &flow, "62610001", "123456").await;
    let wrong = app.validate("62610001", json!("000000")).await;
    assert_eq!(wrong.message(), "403:otp_does_not_match");
    let right = app.validate("62610001", json!("123456")).await;
    assert_eq!(right.status, StatusCode::OK);
    // What the dispatcher and the receipts would have written: an SMS that
    // was not delivered, then a WhatsApp failover that was; told as if it
    // began five minutes ago, so that the webhook attempts the fixtures
    // write now come after the events they deliver.
    let created = Utc::now() - Span::minutes(5);
    let (first, second, delivered) = (
        created + Span::seconds(1),
        created + Span::seconds(61),
        created + Span::seconds(64),
    );
    let (validated, notified) = (created + Span::seconds(90), created + Span::seconds(91));
    let confirmation = json!({
        "sent": true, "status": "ok", "provider": "meta", "channel": "whatsapp", "messageId": "wamid.ABC",
        "attempts": 1, "sentAt": iso(second), "deliveryStatus": "delivered", "deliveredAt": iso(delivered),
        "failover": "sms_undelivered",
        "history": [
            {"channel": "sms", "provider": "twilio", "messageId": "SM0123", "sentAt": iso(first), "deliveryStatus": "undelivered"},
            {"channel": "whatsapp", "provider": "meta", "messageId": "wamid.ABC", "sentAt": iso(second), "deliveryStatus": "delivered"}
        ]
    });
    sqlx::query(
        "UPDATE phone_validations SET provider_confirmation = $2, validated_at = $3, created_at = $4 WHERE id = $1",
    )
    .bind(&id)
    .bind(&confirmation)
    .bind(validated)
    .bind(created)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_deliveries (event_id, event_type, validation_id, client_id, url, attempt, attempted_at, status_code, latency_ms, outcome)
         VALUES ('evt_1', 'phone_validation.validated', $1, $2, 'https://hooks.example.com/otp', 1, $3, 200, 12, 'delivered')",
    )
    .bind(&id)
    .bind(app.client.to_string())
    .bind(notified)
    .execute(&app.pool)
    .await
    .unwrap();
    // What the webhook worker would have written for the client's endpoint:
    // the validated event delivered at the second attempt; and an event of
    // the other validation, which is not this one's story.
    let hooks = endpoint(&app, json!({"url": URL})).await;
    let kind = "phone_validation_validated";
    let event = message(&app, kind, notified, about(kind, &id, "validated")).await;
    deliver(&app, &event, &hooks, "delivered", 2, Some(204)).await;
    attempt(&app, &event, &hooks, Some(503), None, Some("busy")).await;
    attempt(&app, &event, &hooks, Some(204), None, None).await;
    let kind = "phone_validation_sent";
    let elsewhere = message(&app, kind, notified, about(kind, &other, "sent")).await;

    let browser = signed_in(&app).await;
    visit(&browser, "validations").await;
    browser.wait_contains("#validations-table", &other).await;
    assert_accessible(&browser, "validations").await;
    // By phone, typed in international form without a country code: only
    // this one (the API compares the canonical number).
    for typed in ["+507 6261-0001", "00507 (6261) 0001"] {
        browser.fill("#search-phone", typed).await;
        browser.click_on("#validation-search button[type=submit]").await;
        let listed = browser
            .wait_text("#validations-table", "only this validation", |t| {
                t.contains("(1 found)") && !t.contains(&other)
            })
            .await;
        assert!(listed.contains(&id), "{typed}: {listed}");
        if typed.starts_with('+') {
            browser.snapshot("validations").await;
        }
        browser.fill("#search-phone", "").await;
        browser.click_on("#validation-search button[type=submit]").await;
        browser.wait_contains("#validations-table", "(2 found)").await;
    }
    // In national form with its country code.
    browser.fill("#search-country", "+507").await;
    browser.fill("#search-phone", "6261 0001").await;
    browser.click_on("#validation-search button[type=submit]").await;
    browser.wait_contains("#validations-table", "(1 found)").await;
    browser.fill("#search-country", "").await;
    // By status: the other one is still `sent`.
    browser.fill("#search-phone", "").await;
    let status = browser.find("#search-status").await;
    browser.send_keys(&status, "validated").await;
    browser.click_on("#validation-search button[type=submit]").await;
    browser
        .wait_text("#validations-table", "only the validated one", |t| {
            t.contains("(1 found)") && t.contains(&id) && !t.contains(&other)
        })
        .await;

    browser.click_on(&format!("a[href='#/validations/{id}']")).await;
    let timeline = browser.wait_contains("#timeline", "Outcome: validated.").await;
    for expected in [
        "Created: login for +507 62610001",
        "Sent by sms via twilio, message id SM0123; delivery status undelivered.",
        "Failover to whatsapp (sms_undelivered).",
        "Sent by whatsapp via meta, message id wamid.ABC; delivery status delivered.",
        "Receipt: delivered.",
        "Code attempts: 1 of 3.",
        "Webhook phone_validation.validated attempt 1 to https://hooks.example.com/otp: HTTP 200, delivered in 12 ms.",
        &format!("Endpoint message phone_validation_validated (event {event}): {URL}: delivered, 2 attempt(s), last HTTP 204"),
    ] {
        assert!(timeline.contains(expected), "{expected:?} not in:\n{timeline}");
    }
    // In the order it happened.
    let sms = timeline.find("SM0123").unwrap();
    let failover = timeline.find("Failover").unwrap();
    let whatsapp = timeline.find("Sent by whatsapp").unwrap();
    let created = timeline.find("Created").unwrap();
    let outcome = timeline.find("Outcome").unwrap();
    assert!(
        created < sms && sms < failover && failover < whatsapp && whatsapp < outcome,
        "{timeline}"
    );
    assert!(!timeline.contains(&elsewhere), "another validation's event: {timeline}");
    assert_eq!(browser.text_of("#validation-status").await, "validated");
    // The endpoint message's attempts, a click away.
    browser
        .click_on(&format!("#timeline button[aria-label='Attempts of {event}']"))
        .await;
    let attempts = browser.wait_contains("#attempts-table", "HTTP 503").await;
    assert!(
        attempts.contains(&format!("Attempts of {event}"))
            && attempts.contains("HTTP 204")
            && attempts.contains("busy"),
        "{attempts}"
    );
    // The screenshot shows the endpoint message and its attempts.
    let visible = browser
        .execute(
            "const table = document.getElementById('attempts-table');
             table.scrollIntoView({block: 'end'});
             const item = [...document.querySelectorAll('#timeline li')].find((li) => li.textContent.includes(arguments[0]));
             const top = item.getBoundingClientRect().top;
             return top >= 0 && table.getBoundingClientRect().bottom <= window.innerHeight;",
            vec![json!(format!("Endpoint message phone_validation_validated (event {event})"))],
        )
        .await;
    assert_eq!(visible, json!(true), "the endpoint message and its attempts in view");
    browser.snapshot("timeline").await;

    // By id: straight to the timeline; an unknown id is explained.
    visit(&browser, "validations").await;
    browser.fill("#search-id", &other).await;
    browser.click_on("#validation-search button[type=submit]").await;
    browser.wait_contains("#timeline", "Outcome: still open (sent).").await;
    browser
        .goto(&format!("{}/console#/validations/{}", app.base, "0".repeat(24)))
        .await;
    browser
        .wait_contains(
            "#alert",
            "No validation with that id was found. (404 phone_validation_not_found)",
        )
        .await;
}
