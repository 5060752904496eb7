//! A dispatcher killed with SIGKILL mid-burst loses nothing and changes no
//! code: a restarted dispatcher takes the unfinished sends over within the
//! lease (10 s by default), every number's messages carry one code, the
//! first message's code validates, and every code is out within 20 s of the kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::Topology;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use testkit::dispatch::{code_in, twilio_path, Harness};
use testkit::process::Running;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn spawn_dispatcher(h: &Harness, prefix: &str) -> Running {
    // The default lease: what an operator gets.
    h.start_dispatcher_binary(env!("CARGO_BIN_EXE_dispatcher"), prefix, &[])
}

#[tokio::test]
async fn a_dispatcher_killed_mid_burst_repeats_only_the_same_codes_and_loses_nothing() {
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
    const BURST: usize = 300;
    let mut ids = HashMap::new();
    for n in 0..BURST {
        let phone = format!("6264{n:04}");
        let id = h.create_id(&project, &flow, &phone, json!({})).await;
        ids.insert(format!("+507{phone}"), (phone, id));
    }
    testkit::eventually(Duration::from_secs(30), "a part of the burst to be sent", || async {
        (h.sms_requests().await.len() >= 60).then_some(())
    })
    .await;
    first.kill();
    let killed_at = Instant::now();
    assert!(h.recorded_sends().await.len() < BURST, "the kill came mid-burst");

    let mut second = spawn_dispatcher(&h, &prefix);
    testkit::eventually(Duration::from_secs(40), "every validation to be sent", || async {
        (h.recorded_sends().await.len() == BURST).then_some(())
    })
    .await;
    let all_out = killed_at.elapsed();
    second.kill();
    assert!(
        all_out < Duration::from_secs(20),
        "every code out {all_out:?} after the kill"
    );

    // Every number's messages carry one code.
    let mut codes: HashMap<String, Vec<String>> = HashMap::new();
    for request in h.sms_requests().await {
        codes
            .entry(request["To"].clone())
            .or_default()
            .push(code_in(&request["Body"]));
    }
    assert_eq!(codes.len(), BURST, "every accepted validation got its SMS");
    let repeated: Vec<&String> = codes.iter().filter(|(_, c)| c.len() > 1).map(|(to, _)| to).collect();
    for to in &repeated {
        let distinct: HashSet<&String> = codes[*to].iter().collect();
        assert_eq!(distinct.len(), 1, "{to} got different codes: {:?}", codes[*to]);
    }
    println!(
        "all out {all_out:?} after the kill; {} numbers got a repeat",
        repeated.len()
    );
    // The first message's code validates, for a repeated number too.
    // Each number once: a second check of a validated number is a 409.
    let checked: HashSet<&String> = repeated.iter().take(3).copied().chain(codes.keys().take(2)).collect();
    for to in checked {
        let (phone, _) = &ids[to];
        let validated = h.validate(phone, json!(codes[to][0])).await;
        assert_eq!(validated.status, 200, "{to}: {:?}", validated.body);
    }
    testkit::delete_namespace(
        &h.topology,
        &[Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(10)],
    )
    .await;
}
