//! The Overview, Fraud guard and Flows pages against what the API holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{assert_accessible, signed_in, visit, LANES};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestApp;

#[tokio::test]
async fn the_overview_shows_the_numbers_of_what_was_created() {
    let _lane = LANES.acquire().await.expect("a lane");
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let codes = [("62610001", "111111"), ("62610002", "222222"), ("62610003", "333333")];
    for (phone, code) in codes {
        app.sent_validation(&project, &flow, phone, code).await;
    }
    let validated = app.validate("62610002", json!("222222")).await;
    assert_eq!(validated.status, StatusCode::OK, "{:?}", validated.body);
    // One create refused by a fraud-guard block.
    app.block("+507627", &flow, 0).await;
    let refused = app
        .post(
            "/v2/phone-validations",
            TestApp::create_body(&project, &flow, "62712345"),
        )
        .await;
    assert_eq!(refused.message(), "403:fraud_guard_blocked");

    let browser = signed_in(&app).await;
    browser.wait_text("#total-sent", "three sent", |t| t == "3").await;
    assert_eq!(browser.text_of("#total-validated").await, "1");
    assert_eq!(browser.text_of("#total-conversion").await, "33.3 %");
    assert_eq!(browser.text_of("#total-blocked").await, "1");
    let country = browser.text_of("#per-country").await;
    assert!(country.contains("PA"), "{country}");
    let channel = browser.text_of("#per-channel").await;
    assert!(channel.contains("sms"), "{channel}");
    // The chart: 30 days of three bars, titled and described, with its table.
    let chart = browser
        .execute(
            "const c = document.getElementById('daily-chart');
             return [c.getAttribute('role'), c.querySelectorAll('rect').length, c.querySelector('title').textContent,
                     c.querySelector('desc').textContent, document.querySelectorAll('#per-day tbody tr').length]",
            vec![],
        )
        .await;
    assert_eq!(chart[0], "img");
    assert_eq!(chart[1], 90);
    assert!(chart[2]
        .as_str()
        .unwrap()
        .starts_with("Codes sent, validated and blocked per day"));
    assert!(
        chart[3].as_str().unwrap().contains("3 sent, 1 validated, 1 blocked"),
        "{}",
        chart[3]
    );
    assert_eq!(chart[4], 30);
    browser.snapshot("overview").await;
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let rows = browser
        .execute(
            "return document.querySelector('#per-day tbody tr:last-child').textContent",
            vec![],
        )
        .await;
    assert!(rows.as_str().unwrap().starts_with(&today), "{rows}");
}

#[tokio::test]
async fn the_fraud_guard_page_lifts_a_block_and_keeps_the_safe_list() {
    let _lane = LANES.acquire().await.expect("a lane");
    let (app, _project, flow) = TestApp::with_flow(json!({})).await;
    app.block("+507626", &flow, 2).await;

    let browser = signed_in(&app).await;
    visit(&browser, "fraud").await;
    let blocks = browser.wait_contains("#blocks-table", "+507626").await;
    assert!(
        blocks.contains("1 active block(s)") && blocks.contains("low conversion (prefix)"),
        "{blocks}"
    );
    assert_accessible(&browser, "fraud").await;
    browser.click_on("button[aria-label='Lift the block on +507626']").await;
    browser
        .wait_contains("#status", "The block on +507626 is lifted.")
        .await;
    browser.wait_contains("#blocks-table", "0 active block(s)").await;
    assert_eq!(app.get("/v2/fraud-guard/blocks").await.data(), &json!([]));

    // A number the API refuses, explained in words.
    browser.fill("#safe-country", "+507").await;
    browser.fill("#safe-phone", "12").await;
    browser.click_on("#safe-form button[type=submit]").await;
    browser
        .wait_contains("#alert", "The phone number is not valid. (400 invalid_phone)")
        .await;

    browser.fill("#safe-phone", "6261 2345").await;
    browser.click_on("#safe-form button[type=submit]").await;
    browser
        .wait_contains("#status", "+507 62612345 is on the safe list.")
        .await;
    browser.wait_contains("#safe-table", "+507 62612345").await;
    let listed = app.get("/v2/safe-list").await;
    assert_eq!(listed.data()[0]["phone"], "62612345");
    assert_eq!(browser.text_of("#alert").await, "");
    browser.snapshot("fraud").await;

    browser
        .click_on("button[aria-label='Remove +507 62612345 from the safe list']")
        .await;
    browser.wait_contains("#safe-table", "0 safe-listed number(s)").await;
    assert_eq!(app.get("/v2/safe-list").await.data(), &json!([]));
}

#[tokio::test]
async fn the_flows_page_previews_templates_with_their_segments() {
    let _lane = LANES.acquire().await.expect("a lane");
    let (app, _project, flow) = TestApp::with_flow(json!({
        "templates": {"sms": {"en": "Your {app} code: {code}"}}
    }))
    .await;
    let browser = signed_in(&app).await;
    visit(&browser, "flows").await;
    browser
        .wait_contains("#preview-text", "Your Verifik Client code: 123456")
        .await;
    browser
        .wait_contains("#preview-segments", "1 segment, GSM-7, locale en.")
        .await;
    assert!(browser.text_of("#flow-settings").await.contains("otpLength"));
    assert_eq!(
        browser
            .execute("return document.getElementById('flow-picker').value", vec![])
            .await,
        json!(flow)
    );
    assert_accessible(&browser, "flows").await;

    // Typed, the draft is measured at once; saved, the API renders it.
    let long = format!("{{app}}: {{code}}. {}", "Keep this code to yourself. ".repeat(6));
    browser.fill("#template-text", &long).await;
    browser.wait_contains("#draft-segments", "2 segments, GSM-7").await;
    browser.click_on("#template-form button[type=submit]").await;
    browser
        .wait_contains("#status", "The sms template for en is saved.")
        .await;
    browser
        .wait_contains("#preview-text", "Verifik Client: 123456. Keep this code")
        .await;
    browser.wait_contains("#preview-segments", "2 segments, GSM-7").await;
    browser.snapshot("flows").await;
    let stored = app.get(&format!("/v2/project-flows/{flow}")).await;
    assert_eq!(stored.data()["phone"]["templates"]["sms"]["en"], json!(long));

    // A template the API refuses is explained in words.
    browser.fill("#template-text", "No code here").await;
    browser.click_on("#template-form button[type=submit]").await;
    browser.wait_contains("#alert", "(400 invalid_templates)").await;
    let alert = browser.text_of("#alert").await;
    assert!(
        alert.starts_with("The template was refused: it needs {code}"),
        "{alert}"
    );

    // A setting changed: the code is longer, and so is the preview's.
    browser.fill("#setting-otpLength", "8").await;
    browser.click_on("#settings-form button[type=submit]").await;
    browser.wait_contains("#status", "Settings saved.").await;
    browser.wait_contains("#flow-settings", "otpLength\n8").await;
    browser
        .wait_contains("#preview-text", "Verifik Client: 12345678. Keep")
        .await;
    let stored = app.get(&format!("/v2/project-flows/{flow}")).await;
    assert_eq!(stored.data()["phone"]["otpLength"], 8);

    // Another locale falls back to the built-in text; the voice channel has no segments.
    browser.fill("#template-locale", "es").await;
    let channel = browser.find("#template-channel").await;
    browser.send_keys(&channel, "voice").await;
    browser
        .wait_contains("#preview-segments", "A voice call, locale es.")
        .await;
}
