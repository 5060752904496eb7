//! Twilio's own OpenAPI document judges our SMS and voice requests: Stoplight Prism
//! serves `twilio_api_v2010.json` in mock mode and answers 422 to any request
//! that does not match it. Both come from the npm registry and are installed
//! into `target/prism` on first use (the repository commits neither).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use testkit::dispatch::{Harness, ACCOUNT};

const PACKAGES: [&str; 2] = ["@stoplight/prism-cli@5.16.0", "@twilio-alpha/mcp@0.7.0"];

fn prism_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/prism")
}

/// Installs Prism and the document once per test process: the SMS and the
/// voice tests run at the same time, and two `npm install`s into one
/// directory break each other. Install scripts are skipped (the only one is
/// a usage-reporting package's, which fails offline).
async fn install_prism() -> (PathBuf, PathBuf) {
    static INSTALLED: tokio::sync::OnceCell<(PathBuf, PathBuf)> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let dir = prism_dir();
            let bin = dir.join("node_modules/.bin/prism");
            let spec = dir.join("node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json");
            if !bin.exists() || !spec.exists() {
                std::fs::create_dir_all(&dir).unwrap();
                let status = tokio::process::Command::new("npm")
                    .args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--ignore-scripts",
                        "--loglevel=error",
                        "--prefix",
                    ])
                    .arg(&dir)
                    .args(PACKAGES)
                    .status()
                    .await
                    .expect("npm must be installed to run the Twilio contract test");
                assert!(
                    status.success(),
                    "npm install of Prism and Twilio's OpenAPI document failed"
                );
            }
            (bin, spec)
        })
        .await
        .clone()
}

/// Prism serving Twilio's document on a free port, and its base URL.
async fn start_prism() -> (tokio::process::Child, String) {
    let (bin, spec) = install_prism().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prism = tokio::process::Command::new(bin)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(&spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prism");
    let base = format!("http://127.0.0.1:{port}");
    testkit::eventually(Duration::from_secs(90), "Prism to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    (prism, base)
}

#[tokio::test]
async fn our_sms_requests_validate_against_twilios_openapi_document() {
    let (mut prism, base) = start_prism().await;

    // The judge judges: a request missing `To` is refused with 422.
    assert_eq!(create(&base, "Messages", &[("Body", "no recipient")]).await, 422);

    let h = Harness::new().await;
    let mut config = h.dispatcher_config();
    // The request with everything it may carry, the status callback included.
    if let dispatcher::config::SmsProviderConfig::Twilio {
        base_url,
        status_callback,
        ..
    } = &mut config.sms.providers[0]
    {
        *base_url = base.clone();
        *status_callback = Some("https://otp.example.com/callbacks/twilio/status".into());
    }
    h.start_dispatcher_with(config).await;
    let (project, flow) = h.project_and_flow(json!({})).await;
    let id = h.create_id(&project, &flow, "62647737", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(sent["status"], "sent", "{sent}");
    let sid = sent["providerConfirmation"]["messageId"].as_str().unwrap();
    assert!(sid.starts_with("SM"), "{sid}");
    assert_eq!(sent["providerConfirmation"]["attempts"], 1, "accepted at the first try");
    prism.kill().await.ok();
}

#[tokio::test]
async fn our_calls_validate_against_twilios_openapi_document() {
    let (mut prism, base) = start_prism().await;

    // The judge judges: a call without `To` is refused with 422.
    let call = [("From", "+15005550006"), ("Twiml", "<Response/>")];
    assert_eq!(create(&base, "Calls", &call).await, 422);

    let h = Harness::new().await;
    let mut config = h.dispatcher_config();
    // The call with everything it may carry, the status callback included.
    if let dispatcher::config::VoiceConfig::Twilio {
        base_url,
        status_callback,
        ..
    } = &mut config.voice
    {
        *base_url = base.clone();
        *status_callback = Some("https://otp.example.com/callbacks/twilio/voice".into());
    }
    h.start_dispatcher_with(config).await;
    let (project, flow) = h.project_and_flow(json!({"phoneGateway": "voice"})).await;
    // A Panamanian fixed line: a voice-only flow takes it.
    let id = h.create_id(&project, &flow, "300-1234", json!({})).await;
    let sent = h.settled(&id).await;
    assert_eq!(sent["status"], "sent", "{sent}");
    let confirmation = &sent["providerConfirmation"];
    assert_eq!(confirmation["channel"], "voice", "{sent}");
    assert_eq!(confirmation["provider"], "twilio");
    assert_eq!(confirmation["attempts"], 1, "accepted at the first try: {sent}");
    assert!(
        confirmation["messageId"].as_str().is_some_and(|sid| !sid.is_empty()),
        "{sent}"
    );
    prism.kill().await.ok();
}

/// The status of a create of `resource` (`Messages`, `Calls`) from `form`,
/// sent to Prism by hand.
async fn create(base: &str, resource: &str, form: &[(&str, &str)]) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/2010-04-01/Accounts/{ACCOUNT}/{resource}.json"))
        .basic_auth(ACCOUNT, Some("token"))
        .form(form)
        .send()
        .await
        .unwrap()
        .status()
}
