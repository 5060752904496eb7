//! SIGTERM in the middle of a burst of deliveries: the worker stops taking
//! events, finishes and records the deliveries it started, and leaves the
//! rest queued; a restarted worker delivers those. Nothing is posted twice
//! and no attempt is left unrecorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::Topology;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use testkit::process::Running;
use testkit::webhooks::{Receiver, Reply, CODE};
use testkit::TestApp;

fn start_worker(app: &TestApp, prefix: &str) -> Running {
    Running::start(
        env!("CARGO_BIN_EXE_webhook-worker"),
        &[
            ("DATABASE_URL", app.database_url.clone()),
            ("AMQP_URL", testkit::amqp_url()),
            ("AMQP_PREFIX", prefix.to_owned()),
            ("HEALTH_ADDR", "127.0.0.1:0".into()),
            ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("WEBHOOK_RETRY_SCHEDULE", "1s,2s".into()),
            ("WEBHOOK_PREFETCH", "16".into()),
            ("WEBHOOK_SECRET_KEY", testkit::api::WEBHOOK_SECRET_KEY.into()),
        ],
    )
}

#[test]
fn the_worker_refuses_to_start_without_a_proper_webhook_secret_key() {
    for (value, expected) in [
        (None, "WEBHOOK_SECRET_KEY is required"),
        (Some("change-me"), "WEBHOOK_SECRET_KEY is invalid"),
        // 44 characters, but a placeholder.
        (Some("Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMTI="), "placeholder"),
        // base64 of 24 bytes, not 32.
        (Some("cmFuZG9tLWJ5dGVzLWJ1dC10b28tc2hvcnQh"), "32 bytes"),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"));
        command
            .env_clear()
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .current_dir(std::env::temp_dir());
        if let Some(value) = value {
            command.env("WEBHOOK_SECRET_KEY", value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{value:?} must not start");
        assert!(stderr.contains(expected), "{value:?}: {stderr}");
        if let Some(value) = value {
            assert!(!stderr.contains(value), "the message quotes the key: {stderr}");
        }
    }
}

async fn delivered(app: &TestApp) -> HashSet<String> {
    sqlx::query_scalar("SELECT event_id FROM webhook_deliveries WHERE outcome = 'delivered'")
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn sigterm_mid_burst_records_every_delivery_it_made_and_leaves_the_rest_queued() {
    let prefix = format!("test.wdrain.{}.", shared::ObjectId::new());
    let topology = Topology::new(prefix.clone());
    let app = TestApp::spawn_with(topology.clone(), &testkit::amqp_url()).await;
    app.wait_for_broker().await;
    let receiver = Receiver::start(|_| Reply::Slow(200, 100)).await;
    let mut settings = json!({"resendCooldownSeconds": 0});
    settings["webhookUrl"] = json!(receiver.url());
    let (project, flow) = app.project_and_flow(settings).await;
    const EVENTS: usize = 60;
    for n in 0..EVENTS {
        let phone = format!("6266{n:04}");
        app.sent_validation(&project, &flow, &phone, CODE).await;
        assert_eq!(app.validate(&phone, json!(CODE)).await.status, 200);
    }
    app.wait_outbox_empty().await;

    let mut first = start_worker(&app, &prefix);
    receiver.wait_for(10, Duration::from_secs(30)).await;
    first.terminate();
    let status = first.exited(Duration::from_secs(40)).await;
    assert!(status.success(), "the worker exits cleanly on SIGTERM: {status}");
    let posted: HashSet<String> = receiver.received().iter().map(|r| r.header("webhook-id")).collect();
    let in_flight = app.count("webhook_deliveries WHERE outcome = 'in_flight'").await;
    assert_eq!(in_flight, 0, "no attempt is left unrecorded");
    assert_eq!(
        delivered(&app).await,
        posted,
        "every POST made is recorded as delivered, and only those"
    );
    assert!(posted.len() < EVENTS, "the signal came mid-burst");

    let mut second = start_worker(&app, &prefix);
    receiver.wait_for(EVENTS, Duration::from_secs(60)).await;
    testkit::eventually(Duration::from_secs(10), "every delivery recorded", || async {
        (delivered(&app).await.len() == EVENTS).then_some(())
    })
    .await;
    second.kill();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        *per_event.entry(request.header("webhook-id")).or_default() += 1;
    }
    assert_eq!(per_event.len(), EVENTS);
    assert!(per_event.values().all(|n| *n == 1), "no event was posted twice");
    testkit::delete_namespace(&topology, &[Duration::from_secs(1), Duration::from_secs(2)]).await;
}
