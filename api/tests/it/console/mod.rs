//! The web console (docs/contract.md §15) in a real browser: headless
//! Chromium driven over WebDriver (`testkit::webdriver`), against the API
//! listening on a real port with a real database. Every wait polls the DOM
//! with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pages;
mod validations;
mod webhooks;

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

/// The token the tab keeps (`null` when none).
async fn stored_token(browser: &Browser) -> Value {
    browser
        .execute("return sessionStorage.getItem('otpConsoleToken')", vec![])
        .await
}

/// Waits for the sign-in form, and checks the tab forgot the token.
async fn signed_out(browser: &Browser) {
    browser
        .wait_script("return !document.getElementById('sign-in').hidden", "the sign-in form")
        .await;
    assert_eq!(stored_token(browser).await, Value::Null);
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
    assert_eq!(stored_token(&browser).await, json!(app.token));
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
    signed_out(&browser).await;
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
    assert_eq!(stored_token(&browser).await, Value::Null);
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
    signed_out(&browser).await;
}
