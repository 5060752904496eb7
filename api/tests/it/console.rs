//! The web console (docs/contract.md §15) in a real browser: headless
//! Chromium driven over WebDriver (`testkit::webdriver`), against the API
//! listening on a real port with a real database. Every wait polls the DOM
//! with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration as Span, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::webdriver::Browser;
use testkit::TestApp;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// At most two browsers (and their APIs) at once: a browser test on a
/// machine the rest of the suite keeps busy should wait its turn, not time out.
static LANES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The Enter key, as WebDriver types it.
const ENTER: &str = "\u{E007}";

/// A browser on the console, signed in with `token` by the keyboard.
async fn open(app: &TestApp, token: &str) -> Browser {
    let browser = Browser::start().await;
    browser.goto(&format!("{}/console", app.base)).await;
    browser.fill("#token", token).await;
    let input = browser.find("#token").await;
    browser.send_keys(&input, ENTER).await;
    browser
}

async fn signed_in(app: &TestApp) -> Browser {
    let browser = open(app, &app.token).await;
    browser
        .wait_script(
            "return !document.getElementById('nav').hidden",
            "the console to sign in",
        )
        .await;
    browser
}

/// Goes to a page by its navigation link (a real link, as a keyboard user
/// follows it) and waits until the link says it is the current page.
async fn visit(browser: &Browser, page: &str) {
    browser
        .execute(
            "window.consolePageBefore = document.querySelector('#page > div')",
            vec![],
        )
        .await;
    browser.click_on(&format!("#nav a[data-page='{page}']")).await;
    browser
        .wait_script(
            &format!(
                "const now = document.querySelector('#page > div');
                 return document.querySelector(\"#nav a[aria-current='page']\")?.dataset.page === '{page}'
                     && now?.id === 'page-{page}' && now !== window.consolePageBefore"
            ),
            &format!("the {page} page"),
        )
        .await;
}

/// Every form control on the page has a label, and nothing carries an
/// inline style.
async fn assert_accessible(browser: &Browser, page: &str) {
    let unlabelled = browser
        .execute(
            "return [...document.querySelectorAll('input, select, textarea')]
                .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map((e) => e.id || e.outerHTML);",
            vec![],
        )
        .await;
    assert_eq!(unlabelled, json!([]), "unlabelled controls on {page}");
    let styled = browser
        .execute("return document.querySelectorAll('[style]').length", vec![])
        .await;
    assert_eq!(styled, json!(0), "inline styles on {page}");
}

fn iso(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_its_policy() {
    let app = TestApp::spawn().await;
    let page = app.http.get(format!("{}/console", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();

    // No inline script, handler or style: every <script> has a src.
    let lower = html.to_ascii_lowercase();
    let scripts: Vec<&str> = lower
        .split("<script")
        .skip(1)
        .map(|s| &s[..s.find('>').unwrap()])
        .collect();
    assert!(!scripts.is_empty());
    for tag in &scripts {
        assert!(
            tag.contains(" src=\"/console/assets/"),
            "an inline script: <script{tag}>"
        );
    }
    for (at, _) in lower.match_indices(" on") {
        let name: String = lower[at + 3..].chars().take_while(char::is_ascii_alphabetic).collect();
        assert!(
            name.is_empty() || !lower[at + 3 + name.len()..].trim_start().starts_with('='),
            "an inline handler on{name}"
        );
    }
    assert!(!lower.contains("style="), "an inline style");
    assert!(
        !lower.contains("http://") && !lower.contains("https://"),
        "nothing from elsewhere"
    );

    // Revalidation answers 304 with the same ETag.
    let again = app
        .http
        .get(format!("{}/console", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    for (asset, kind) in [
        ("app.js", "text/javascript"),
        ("console.css", "text/css"),
        ("flows.js", "text/javascript"),
    ] {
        let answer = app
            .http
            .get(format!("{}/console/assets/{asset}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        assert!(
            answer.headers()["content-type"].to_str().unwrap().starts_with(kind),
            "{asset}"
        );
        assert_eq!(answer.headers()["content-security-policy"], CSP, "{asset}");
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff", "{asset}");
        assert!(answer.headers().contains_key("etag"), "{asset}");
    }
    let missing = app.get("/console/assets/nope.js").await;
    assert_eq!(
        (missing.status, missing.message()),
        (StatusCode::NOT_FOUND, "404:route_not_found")
    );
}

#[tokio::test]
async fn signing_in_keeps_the_token_in_session_storage_and_out_of_every_url() {
    let _lane = LANES.acquire().await.expect("a lane");
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    let stored = browser
        .execute("return sessionStorage.getItem('otpConsoleToken')", vec![])
        .await;
    assert_eq!(stored, json!(app.token));
    assert_eq!(browser.text_of("#status").await, "Signed in.");
    assert!(browser.current_url().await.ends_with("/console#/overview"));
    browser.wait_contains("#total-sent", "0").await;
    // Not in the address, nor in any URL the page requested.
    let urls = browser
        .execute(
            "return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)]",
            vec![],
        )
        .await;
    let urls = urls.as_array().unwrap();
    assert!(urls.len() > 3, "{urls:?}");
    for url in urls {
        assert!(!url.as_str().unwrap().contains(&app.token), "the token in {url}");
    }
    assert!(!browser.current_url().await.contains(&app.token));
    // The page ran under the policy: no inline styles, every control
    // labelled, nothing refused by the Content-Security-Policy.
    assert_accessible(&browser, "overview").await;
    let log = browser.console_log().await;
    assert!(
        !log.iter()
            .any(|line| line.contains("Content Security Policy") || line.contains("SEVERE")),
        "{log:#?}"
    );

    browser.click_on("#sign-out").await;
    browser
        .wait_script("return !document.getElementById('sign-in').hidden", "the sign-in form")
        .await;
    let stored = browser
        .execute("return sessionStorage.getItem('otpConsoleToken')", vec![])
        .await;
    assert_eq!(stored, Value::Null);
    assert!(browser.find_all("#total-sent").await.is_empty());
}

#[tokio::test]
async fn a_refused_token_is_explained_in_words_and_not_kept() {
    let _lane = LANES.acquire().await.expect("a lane");
    let app = TestApp::spawn().await;
    let browser = open(&app, "not-a-token").await;
    let alert = browser.wait_contains("#alert", "The client token was refused").await;
    assert!(alert.contains("401 invalid_token"), "{alert}");
    browser.snapshot("refused").await;
    let stored = browser
        .execute("return sessionStorage.getItem('otpConsoleToken')", vec![])
        .await;
    assert_eq!(stored, Value::Null);
    let nav_hidden = browser
        .execute("return document.getElementById('nav').hidden", vec![])
        .await;
    assert_eq!(nav_hidden, json!(true));

    // A token refused mid-session (as once it expires): signed out, told why.
    let browser = signed_in(&app).await;
    browser.wait_contains("#total-sent", "0").await;
    let expired = app.jwt.client_token(&app.client, 0, -1).expect("a token");
    browser
        .execute(
            "sessionStorage.setItem('otpConsoleToken', arguments[0])",
            vec![json!(expired)],
        )
        .await;
    browser.click_on("#nav a[data-page='fraud']").await;
    browser.wait_contains("#alert", "The client token was refused").await;
    browser
        .wait_script("return !document.getElementById('sign-in').hidden", "the sign-in form")
        .await;
    let stored = browser
        .execute("return sessionStorage.getItem('otpConsoleToken')", vec![])
        .await;
    assert_eq!(stored, Value::Null);
}

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
    sqlx::query(
        "INSERT INTO fraud_blocks (id, client_id, prefix, project_flow_id, reason, sent, validated, until)
         VALUES ($1, $2, '+507627', $3, 'low_conversion', 40, 0, now() + interval '1 hour')",
    )
    .bind(shared::ObjectId::new())
    .bind(&app.client)
    .bind(&flow)
    .execute(&app.pool)
    .await
    .unwrap();
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
    // was not delivered, then a WhatsApp failover that was.
    let created: chrono::DateTime<Utc> = app.validation(&id).await["createdAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
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
    sqlx::query("UPDATE phone_validations SET provider_confirmation = $2, validated_at = $3 WHERE id = $1")
        .bind(&id)
        .bind(&confirmation)
        .bind(validated)
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

    let browser = signed_in(&app).await;
    visit(&browser, "validations").await;
    browser.wait_contains("#validations-table", &other).await;
    assert_accessible(&browser, "validations").await;
    // By phone: only this one.
    browser.fill("#search-country", "+507").await;
    browser.fill("#search-phone", "6261-0001").await;
    browser.click_on("#validation-search button[type=submit]").await;
    browser.wait_contains("#validations-table", "(1 found)").await;
    let listed = browser.text_of("#validations-table").await;
    assert!(listed.contains(&id) && !listed.contains(&other), "{listed}");
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
    assert_eq!(browser.text_of("#validation-status").await, "validated");
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

#[tokio::test]
async fn the_fraud_guard_page_lifts_a_block_and_keeps_the_safe_list() {
    let _lane = LANES.acquire().await.expect("a lane");
    let (app, _project, flow) = TestApp::with_flow(json!({})).await;
    sqlx::query(
        "INSERT INTO fraud_blocks (id, client_id, prefix, project_flow_id, reason, sent, validated, until)
         VALUES ($1, $2, '+507626', $3, 'low_conversion', 40, 2, now() + interval '1 hour')",
    )
    .bind(shared::ObjectId::new())
    .bind(&app.client)
    .bind(&flow)
    .execute(&app.pool)
    .await
    .unwrap();

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
    let event = shared::ObjectId::new().to_string();
    let occurred = Utc::now() - Span::minutes(5);
    sqlx::query(
        "INSERT INTO webhook_messages (event_id, client_id, event_type, occurred_at, payload)
         VALUES ($1, $2, 'phone_validation_failed', $3, '{\"type\": \"phone_validation_failed\"}')",
    )
    .bind(&event)
    .bind(&app.client)
    .bind(occurred)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_endpoint_deliveries (event_id, endpoint_id, client_id, status, attempts, last_attempt_at, last_status_code)
         VALUES ($1, $2, $3, 'failed', 2, $4, 500)",
    )
    .bind(&event)
    .bind(&endpoint)
    .bind(&app.client)
    .bind(occurred + Span::minutes(1))
    .execute(&app.pool)
    .await
    .unwrap();
    for (status, error, body) in [(Some(500), None, Some("oops")), (None, Some("timed out"), None)] {
        sqlx::query(
            "INSERT INTO webhook_endpoint_attempts (event_id, endpoint_id, client_id, url, status_code, latency_ms, error, response_body)
             VALUES ($1, $2, $3, 'https://8.8.8.8/hooks', $4, 12, $5, $6)",
        )
        .bind(&event)
        .bind(&endpoint)
        .bind(&app.client)
        .bind(status)
        .bind(error)
        .bind(body)
        .execute(&app.pool)
        .await
        .unwrap();
    }
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
