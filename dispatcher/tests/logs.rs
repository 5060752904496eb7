//! The plain code appears in no log line at `info` or above, from the API or
//! the dispatcher (only the development `log` provider prints it, by design).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use testkit::dispatch::{code_in, form, Harness};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_plain_code_never_reaches_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber_init(move || writer.clone());

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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("code sent"),
        "the dispatcher's lines were captured:\n{logs}"
    );
    assert!(logs.contains("phone validated"), "the API's lines were captured");
    assert!(!logs.contains(&code), "the code leaked into the logs:\n{logs}");
    assert!(!logs.contains("twilio-token"), "a secret leaked into the logs");
}

fn tracing_subscriber_init<W>(make: impl Fn() -> W + Send + Sync + 'static)
where
    W: Write + 'static,
{
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(make)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber of this test binary");
}
