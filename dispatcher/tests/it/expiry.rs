//! Expiry on its own (docs/contract.md §13): an open validation past
//! `expiresAt` becomes `failed` (`expired`) with one `phone_validation_failed`
//! event, whoever sweeps and however many sweep at once; unexpired and final
//! validations are left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dispatcher::expiry::Sweep;
use serde_json::json;
use shared::process::Messaging;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use testkit::api::{common_config, relay_config};
use testkit::dispatch::{created, Harness};
use testkit::lifecycle::{expire, expired_copies, published};
use testkit::TestApp;
use tokio_util::sync::CancellationToken;

/// A sweep of `batch` on the app's database, with its own relay.
fn sweep(app: &TestApp, batch: i64) -> Sweep {
    let common = common_config(&app.database_url, &testkit::amqp_url());
    let messaging = Messaging::start(
        &common,
        app.topology.clone(),
        "expiry-test",
        Some((app.pool.clone(), relay_config())),
    );
    let relay = messaging.relay.clone().expect("a relay");
    // The broker connection lives as long as the test (the relay's sweeper
    // publishes what the fast path could not).
    std::mem::forget(messaging);
    Sweep {
        pool: app.pool.clone(),
        relay,
        every: Duration::from_secs(3600),
        batch,
        cancel: CancellationToken::new(),
    }
}

/// Runs `sweep` until a pass finds nothing; returns how many it failed.
async fn until_empty(sweep: &Sweep) -> usize {
    let mut total = 0;
    loop {
        match sweep.once().await.expect("a sweep") {
            0 => return total,
            n => total += n,
        }
    }
}

async fn status_and_reason(app: &TestApp, id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, failed_reason FROM phone_validations WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_expired_open_validation_fails_once_and_the_rest_are_left_alone() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0})).await;
    let fresh = app.create_id(&project, &flow, "62647701", json!({})).await;
    let sent = app.sent_validation(&project, &flow, "62647702", "123456").await;
    let unexpired = app.create_id(&project, &flow, "62647703", json!({})).await;
    let validated = app.sent_validation(&project, &flow, "62647704", "654321").await;
    assert_eq!(app.validate("62647704", json!("654321")).await.status, 200);
    // A send a dispatcher holds is left to it (it gives up as `provider_unavailable`).
    let held = app.create_id(&project, &flow, "62647708", json!({})).await;
    sqlx::query("UPDATE phone_validations SET dispatch_lease_holder = 'elsewhere', dispatch_lease_until = now() + interval '1 hour' WHERE id = $1")
        .bind(&held)
        .execute(&app.pool)
        .await
        .unwrap();
    for id in [&fresh, &sent, &validated, &held] {
        expire(&app.pool, id, 1.0).await;
    }
    let events = published(&app).await;
    assert_eq!(events.len(), 1, "the validated event: {events:?}");

    let sweep = sweep(&app, 1000);
    assert_eq!(sweep.once().await.unwrap(), 2);
    assert_eq!(sweep.once().await.unwrap(), 0, "nothing twice");
    for id in [&fresh, &sent] {
        assert_eq!(
            status_and_reason(&app, id).await,
            ("failed".into(), Some("expired".into()))
        );
    }
    assert_eq!(status_and_reason(&app, &unexpired).await.0, "new");
    assert_eq!(status_and_reason(&app, &validated).await.0, "validated");
    assert_eq!(status_and_reason(&app, &held).await.0, "new", "held by a dispatcher");

    // A validate call on the expired code answers so, and emits nothing more.
    assert_eq!(app.validate("62647702", json!("123456")).await.status, 412);
    let events = published(&app).await;
    let mut failed: Vec<&str> = events
        .iter()
        .filter(|e| e.kind() == "phone_validation_failed")
        .map(|e| e.validation())
        .collect();
    failed.sort_unstable();
    let mut expected = vec![fresh.as_str(), sent.as_str()];
    expected.sort_unstable();
    assert_eq!(failed, expected, "{events:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(event.routing_key, "phone_validation.failed");
        assert_eq!(
            event.body["data"]["failedReason"], "expired",
            "the full record: {event:?}"
        );
        assert_eq!(event.body["data"]["status"], "failed");
    }
}

#[tokio::test]
async fn a_validate_call_first_leaves_the_sweep_nothing_to_emit() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0})).await;
    let sent = app.sent_validation(&project, &flow, "62647705", "123456").await;
    expire(&app.pool, &sent, 1.0).await;
    assert_eq!(app.validate("62647705", json!("123456")).await.status, 412);
    assert_eq!(sweep(&app, 1000).once().await.unwrap(), 0);
    let events = published(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].body["data"]["failedReason"], "expired");
}

#[tokio::test]
async fn two_sweepers_at_once_fail_each_expired_validation_once() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let template = app.create_id(&project, &flow, "62647706", json!({})).await;
    let mut ids = expired_copies(&app.pool, &template, 1500, "sent", 5.0).await;
    ids.extend(expired_copies(&app.pool, &template, 1500, "new", 2.0).await);
    let (one, two) = (sweep(&app, 100), sweep(&app, 100));
    let (a, b) = tokio::join!(until_empty(&one), until_empty(&two));
    assert_eq!(a + b, 3000, "one sweeper took {a}, the other {b}");
    assert_eq!(
        app.count("phone_validations WHERE status = 'failed' AND failed_reason = 'expired'")
            .await,
        3000
    );
    assert_eq!(status_and_reason(&app, &template).await.0, "new", "unexpired");

    // One event per validation. RabbitMQ may carry an event twice (the
    // outbox is at least once: a slow fast path and the relay's sweeper can
    // both publish a row), always with the same `eventId`, which consumers
    // de-duplicate on (docs/contract.md §6).
    let events = published(&app).await;
    let mut per_validation: HashMap<&str, HashSet<&str>> = HashMap::new();
    for event in &events {
        assert_eq!(event.kind(), "phone_validation_failed");
        let event_id = event.body["eventId"].as_str().unwrap();
        per_validation.entry(event.validation()).or_default().insert(event_id);
    }
    assert_eq!(per_validation.len(), 3000);
    assert!(ids
        .iter()
        .all(|id| per_validation.get(id.as_str()).map(HashSet::len) == Some(1)));
}

#[tokio::test]
async fn every_dispatcher_sweeps_on_its_own() {
    let h = Harness::new().await;
    h.sms_answers([], created("SMexpiry1")).await;
    let (id, sent) = h.send_one(json!({}), "62647707", json!({})).await;
    assert_eq!(sent["status"], "sent");
    expire(&h.pool, &id, 1.0).await;
    let failed = testkit::eventually(Duration::from_secs(10), "the sweep to fail it", || async {
        let v = h.validation(&id).await;
        (v["status"] == "failed").then_some(v)
    })
    .await;
    assert_eq!(failed["failedReason"], "expired");
    let events = published(&h).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind(), "phone_validation_failed");
}
