//! A dispatcher killed with SIGKILL mid-burst loses nothing: after a restart
//! every accepted validation is sent, and a code is sent twice only if its
//! request was with the provider at the moment of the kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::Topology;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use testkit::dispatch::{form, twilio_path, Harness};
use testkit::process::Running;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn spawn_dispatcher(h: &Harness, prefix: &str) -> Running {
    let lease = [("DISPATCH_LEASE_SECONDS", "2".to_owned())];
    h.start_dispatcher_binary(env!("CARGO_BIN_EXE_dispatcher"), prefix, &lease)
}

#[tokio::test]
async fn a_dispatcher_killed_mid_burst_loses_nothing() {
    let prefix = format!("test.crash.{}.", shared::ObjectId::new());
    let h = Harness::with_topology(Topology::new(prefix.clone())).await;
    Mock::given(method("POST"))
        .and(path(twilio_path()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SMcrash"}))
                .set_delay(Duration::from_millis(40)),
        )
        .mount(&h.twilio)
        .await;
    let (project, flow) = h.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let mut first = spawn_dispatcher(&h, &prefix);
    const BURST: usize = 200;
    for n in 0..BURST {
        h.create_id(&project, &flow, &format!("6264{n:04}"), json!({})).await;
    }
    testkit::eventually(Duration::from_secs(30), "a part of the burst to be sent", || async {
        (h.twilio.received_requests().await.unwrap_or_default().len() >= 40).then_some(())
    })
    .await;
    first.kill();
    let requested: HashSet<String> = h
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| form(r)["To"].clone())
        .collect();
    let recorded = h.recorded_sends().await;
    // Requests the provider had taken whose outcome was not yet recorded.
    let with_provider: HashSet<&String> = requested.difference(&recorded).collect();
    assert!(recorded.len() < BURST, "the kill came mid-burst");

    let mut second = spawn_dispatcher(&h, &prefix);
    testkit::eventually(Duration::from_secs(60), "every validation to be sent", || async {
        (h.recorded_sends().await.len() == BURST).then_some(())
    })
    .await;
    second.kill();

    let mut per_phone: HashMap<String, usize> = HashMap::new();
    for request in h.twilio.received_requests().await.unwrap() {
        *per_phone.entry(form(&request)["To"].clone()).or_default() += 1;
    }
    assert_eq!(per_phone.len(), BURST, "every accepted validation got its SMS");
    let duplicated: Vec<&String> = per_phone.iter().filter(|(_, n)| **n > 1).map(|(p, _)| p).collect();
    for phone in &duplicated {
        assert!(
            with_provider.contains(phone),
            "{phone} was sent twice but was not with the provider at the kill"
        );
        assert_eq!(per_phone[*phone], 2);
    }
    println!(
        "killed with {} sends in flight; {} duplicates",
        with_provider.len(),
        duplicated.len()
    );

    testkit::delete_namespace(&h.topology, &[Duration::from_secs(1), Duration::from_secs(3)]).await;
}
