//! A dispatcher killed with SIGKILL mid-burst loses nothing: after a restart
//! every accepted validation is sent, and a code is sent twice only if its
//! request was with the provider at the moment of the kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::Topology;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::api::PEPPER;
use testkit::dispatch::{form, twilio_path, Harness, ACCOUNT, FROM};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn spawn_dispatcher(h: &Harness, prefix: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dispatcher"))
        .env("DATABASE_URL", &h.database_url)
        .env("AMQP_URL", testkit::amqp_url())
        .env("AMQP_PREFIX", prefix)
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .env("OTP_PEPPER", PEPPER)
        .env("OTP_BCRYPT_COST", "4")
        .env("DISPATCH_PREFETCH", "32")
        .env("DISPATCH_LEASE_SECONDS", "2")
        .env("DISPATCH_RETRY_SCHEDULE", "1s,3s")
        .env("SMS_PROVIDER", "twilio")
        .env("TWILIO_BASE_URL", h.twilio.uri())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", "twilio-token")
        .env("TWILIO_FROM", FROM)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the dispatcher binary")
}

async fn sent_phones(h: &Harness) -> HashSet<String> {
    sqlx::query_scalar::<_, String>("SELECT country_code || phone FROM phone_validations WHERE status = 'sent'")
        .fetch_all(&h.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
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
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let requested: HashSet<String> = h
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| form(r)["To"].clone())
        .collect();
    let recorded = sent_phones(&h).await;
    // Requests the provider had taken whose outcome was not yet recorded.
    let with_provider: HashSet<&String> = requested.difference(&recorded).collect();
    assert!(recorded.len() < BURST, "the kill came mid-burst");

    let mut second = spawn_dispatcher(&h, &prefix);
    testkit::eventually(Duration::from_secs(60), "every validation to be sent", || async {
        (sent_phones(&h).await.len() == BURST).then_some(())
    })
    .await;
    second.kill().ok();
    second.wait().ok();

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

    let channel = h.amqp.create_channel().await.unwrap();
    h.topology.delete(&channel).await.ok();
    for tier in [Duration::from_secs(1), Duration::from_secs(3)] {
        let name = Topology::retry_queue(&h.topology.dispatch_queue(), tier);
        channel
            .queue_delete(name.as_str().into(), Default::default())
            .await
            .ok();
    }
}
