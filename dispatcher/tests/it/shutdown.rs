//! SIGTERM in the middle of a burst: the dispatcher stops taking messages,
//! finishes the sends it started and records each, and returns the rest to
//! the queue; a restarted dispatcher sends those. No send goes unrecorded
//! and no code goes out twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::Topology;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use testkit::dispatch::{form, twilio_path, Harness};
use testkit::process::Running;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn start_dispatcher(h: &Harness, prefix: &str, extra: &[(&str, String)]) -> Running {
    h.start_dispatcher_binary(env!("CARGO_BIN_EXE_dispatcher"), prefix, extra)
}

#[tokio::test]
async fn sigterm_mid_burst_records_every_send_it_made_and_leaves_the_rest_queued() {
    let prefix = format!("test.drain.{}.", shared::ObjectId::new());
    let h = Harness::with_topology(Topology::new(prefix.clone())).await;
    Mock::given(method("POST"))
        .and(path(twilio_path()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SMdrain"}))
                .set_delay(Duration::from_millis(150)),
        )
        .mount(&h.twilio)
        .await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    // The whole burst waits in the queue before the dispatcher starts, and a
    // small prefetch with a slow provider keeps it at least 3 s at work
    // (200 / 8 × 150 ms), so the signal lands mid-burst however fast the
    // creates were.
    const BURST: usize = 200;
    for n in 0..BURST {
        h.create_id(&project, &flow, &format!("6265{n:04}"), json!({})).await;
    }
    let mut first = start_dispatcher(&h, &prefix, &[("DISPATCH_PREFETCH", "8".into())]);
    testkit::eventually(Duration::from_secs(30), "a part of the burst to be sent", || async {
        (h.sms_requests().await.len() >= 40).then_some(())
    })
    .await;
    first.terminate();
    let status = first.exited(Duration::from_secs(40)).await;
    assert!(status.success(), "the dispatcher exits cleanly on SIGTERM: {status}");

    let requested: HashSet<String> = h.sms_requests().await.into_iter().map(|f| f["To"].clone()).collect();
    let at_stop = h.recorded_sends().await;
    assert_eq!(
        requested, at_stop,
        "every send made before the stop is recorded, and only those"
    );
    assert!(at_stop.len() < BURST, "the signal came mid-burst");

    let mut second = start_dispatcher(&h, &prefix, &[]);
    testkit::eventually(Duration::from_secs(60), "every validation to be sent", || async {
        (h.recorded_sends().await.len() == BURST).then_some(())
    })
    .await;
    second.kill();
    let mut per_phone: HashMap<String, usize> = HashMap::new();
    for request in h.twilio.received_requests().await.unwrap() {
        *per_phone.entry(form(&request)["To"].clone()).or_default() += 1;
    }
    assert_eq!(per_phone.len(), BURST);
    assert!(per_phone.values().all(|n| *n == 1), "no code went out twice");

    testkit::delete_namespace(&h.topology, &[Duration::from_secs(1), Duration::from_secs(3)]).await;
}

#[test]
fn the_dispatcher_refuses_a_short_or_placeholder_key() {
    for (name, value) in [
        ("OTP_CODE_KEY", "dev-code-key-change-me"),
        ("OTP_CODE_KEY", "change-me-to-a-third-long-random-string"),
        ("OTP_PEPPER", "test-pepper"),
    ] {
        let mut env = vec![
            ("OTP_PEPPER", testkit::api::PEPPER),
            ("OTP_CODE_KEY", testkit::dispatch::CODE_KEY),
        ];
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dispatcher"))
            .env_clear()
            .envs(env)
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} must not start");
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains(value), "the message quotes the key: {stderr}");
    }
}
