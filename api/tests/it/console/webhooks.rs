//! The Webhooks page: endpoints and the message log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{assert_accessible, signed_in, visit, LANES};
use crate::webhook_fixtures::{attempt, deliver, message};
use chrono::{Duration as Span, Utc};
use serde_json::json;
use testkit::TestApp;

/// The Webhooks page against the endpoints API of §13 (an IP literal as
/// the URL: a public address that needs no DNS).
#[tokio::test]
async fn the_webhooks_page_adds_rotates_and_disables_endpoints() {
    let _lane = LANES.acquire().await.expect("a lane");
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    visit(&browser, "webhooks").await;
    browser.wait_contains("#endpoints-table", "0 of 0 endpoint(s)").await;
    assert_accessible(&browser, "webhooks").await;

    browser.fill("#endpoint-url", "https://8.8.8.8/hooks").await;
    browser.fill("#endpoint-description", "Main receiver").await;
    browser.click_on("#endpoint-form button[type=submit]").await;
    browser
        .wait_contains("#status", "Endpoint https://8.8.8.8/hooks added.")
        .await;
    let secret = browser.wait_contains("#secret-value", "whsec_").await;
    browser.wait_contains("#endpoints-table", "Main receiver").await;
    let listed = app.get("/v2/webhook-endpoints").await;
    let endpoint = listed.data()[0]["_id"].as_str().unwrap().to_owned();
    assert!(
        listed.data()[0].get("secret").is_none(),
        "the secret is shown once only"
    );

    // Filtered out, and back.
    browser.fill("#endpoint-filter", "nothing-like-it").await;
    browser.wait_contains("#endpoints-table", "0 of 1 endpoint(s)").await;
    browser.fill("#endpoint-filter", "main").await;
    browser.wait_contains("#endpoints-table", "1 of 1 endpoint(s)").await;

    // Rotated: a new secret, shown once.
    browser.click_on("#secret-box button").await;
    browser
        .click_on("button[aria-label='Rotate the secret of https://8.8.8.8/hooks']")
        .await;
    let rotated = browser.wait_contains("#secret-value", "whsec_").await;
    assert_ne!(rotated, secret);

    // Disabled and enabled.
    browser
        .click_on("button[aria-label='Disable https://8.8.8.8/hooks']")
        .await;
    browser.wait_contains("#endpoints-table", "disabled").await;
    assert_eq!(
        app.get(&format!("/v2/webhook-endpoints/{endpoint}")).await.data()["disabled"],
        true
    );
    browser
        .click_on("button[aria-label='Enable https://8.8.8.8/hooks']")
        .await;
    browser
        .wait_contains("#status", "https://8.8.8.8/hooks is enabled.")
        .await;
    // The table is drawn anew (its recover field with it) before the status
    // says so; the field filled before that would be replaced empty.
    browser
        .wait_script(
            "return !!document.querySelector(\"button[aria-label='Disable https://8.8.8.8/hooks']\")",
            "the endpoint's row, enabled",
        )
        .await;

    // Recover since an hour ago: nothing to queue yet. (The value is set
    // by script: how a datetime-local field is typed depends on the locale.)
    let hour_ago = (Utc::now() - Span::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    browser
        .execute(
            "document.getElementById(arguments[0]).value = arguments[1]",
            vec![json!(format!("recover-since-{endpoint}")), json!(hour_ago)],
        )
        .await;
    browser
        .click_on("form[aria-label='Recover messages for https://8.8.8.8/hooks'] button")
        .await;
    browser.wait_contains("#status", "0 message(s) queued again").await;
    browser
        .wait_contains("#messages-table", "Messages, page 1 of 1 (0)")
        .await;

    // A message that failed twice: its state, its attempts, resent.
    let kind = "phone_validation_failed";
    let event = message(&app, kind, Utc::now() - Span::minutes(5), json!({"type": kind})).await;
    deliver(&app, &event, &endpoint, "failed", 2, Some(500)).await;
    attempt(&app, &event, &endpoint, Some(500), None, Some("oops")).await;
    attempt(&app, &event, &endpoint, None, Some("timed out"), None).await;
    let state = browser.find("#message-status").await;
    browser.send_keys(&state, "failed").await;
    browser.click_on("#message-filters button[type=submit]").await;
    let messages = browser.wait_contains("#messages-table", &event).await;
    assert!(
        messages.contains("phone_validation_failed")
            && messages.contains("https://8.8.8.8/hooks: failed, 2 attempt(s), last HTTP 500"),
        "{messages}"
    );
    browser
        .click_on(&format!("button[aria-label='Attempts of {event}']"))
        .await;
    let attempts = browser.wait_contains("#attempts-table", "oops").await;
    assert!(
        attempts.contains("HTTP 500") && attempts.contains("timed out"),
        "{attempts}"
    );
    browser.click_on(&format!("button[aria-label='Resend {event}']")).await;
    browser
        .wait_contains("#status", &format!("{event}: 1 delivery(ies) queued again."))
        .await;
    assert_accessible(&browser, "webhooks").await;
    browser.snapshot("webhooks").await;
}
