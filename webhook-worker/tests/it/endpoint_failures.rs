//! Webhook endpoints that fail (docs/contract.md §13): each (event, endpoint)
//! retries on its own, so a dead endpoint (500s, or a black hole) delays no
//! healthy one; the schedule runs out into `failed`; 410 stops at once; an
//! endpoint failing for `WEBHOOK_DISABLE_AFTER_HOURS` is disabled and its
//! pending deliveries fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::domain::WebhookEventType;
use std::time::{Duration, Instant};
use testkit::webhook_endpoints::{self as endpoints, Endpoint};
use testkit::webhooks::{BlackHole, Options, Receiver, Reply, TestEnv, SECRET};

const WAIT: Duration = Duration::from_secs(30);

/// A validation of the test client's.
async fn validation(env: &TestEnv) -> String {
    let (project, flow) = env.app.project_and_flow(json!({})).await;
    env.create(&project, &flow, "62617737", None).await
}

/// Lifecycle events about validation `id`; their ids.
async fn events(env: &TestEnv, id: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let kind = WebhookEventType::Sent;
        ids.push(endpoints::publish_lifecycle(&env.app.amqp, &env.app.topology, kind, id).await);
    }
    ids
}

#[tokio::test]
async fn a_dead_endpoint_delays_no_healthy_one() {
    let env = TestEnv::spawn(Options {
        timeout: Duration::from_secs(20),
        endpoints: webhook_worker::config::EndpointConfig {
            per_endpoint: 4,
            poll: Duration::from_millis(100),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let hole = BlackHole::start().await;
    let failing = Receiver::answering(500).await;
    let healthy = Receiver::answering(200).await;
    let pool = &env.app.pool;
    let id = validation(&env).await;
    let hole_id = Endpoint::new(&env.app.client, &hole.url(), SECRET).insert(pool).await;
    Endpoint::new(&env.app.client, &failing.url(), SECRET)
        .insert(pool)
        .await;
    let healthy_id = Endpoint::new(&env.app.client, &healthy.url(), SECRET)
        .insert(pool)
        .await;

    // The dead endpoints' slots fill first.
    let first = events(&env, &id, 10).await;
    healthy.wait_for(10, WAIT).await;
    testkit::eventually(WAIT, "the black hole to hold its slots", || async {
        (hole.accepted() >= 4).then_some(())
    })
    .await;
    // Then each new event still reaches the healthy endpoint at once.
    let started = Instant::now();
    let later = events(&env, &id, 10).await;
    healthy.wait_for(20, WAIT).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the healthy endpoint's 10 events took {took:?}"
    );
    assert_eq!(hole.accepted(), 4, "no more than its slots are spent on the black hole");
    for event in first.iter().chain(&later) {
        testkit::eventually(WAIT, "the healthy delivery to be recorded", || async {
            let done = endpoints::delivery(pool, event, &healthy_id).await;
            (done == Some(("delivered".to_owned(), 1))).then_some(())
        })
        .await;
    }
    testkit::eventually(WAIT, "the stalled black hole to be rested", || async {
        let paused: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT paused_until FROM webhook_endpoints WHERE id = $1")
                .bind(&hole_id)
                .fetch_one(pool)
                .await
                .unwrap();
        paused
    })
    .await;
    assert_eq!(hole.accepted(), 4, "still no more than its slots");
}

#[tokio::test]
async fn failures_retry_on_the_schedule_then_fail_and_a_410_stops_at_once() {
    let env = TestEnv::spawn(Options {
        schedule: "1s,2s",
        ..Options::default()
    })
    .await;
    let failing = Receiver::start(|_| Reply::Status(503)).await;
    let gone = Receiver::answering(410).await;
    let pool = &env.app.pool;
    let id = validation(&env).await;
    let failing_id = Endpoint::new(&env.app.client, &failing.url(), SECRET)
        .insert(pool)
        .await;
    let gone_id = Endpoint::new(&env.app.client, &gone.url(), SECRET).insert(pool).await;
    let event = events(&env, &id, 1).await.remove(0);

    let received = failing.wait_for(3, WAIT).await;
    testkit::eventually(WAIT, "the delivery to fail", || async {
        let done = endpoints::delivery(pool, &event, &failing_id).await;
        (done == Some(("failed".to_owned(), 3))).then_some(())
    })
    .await;
    for request in &received {
        assert_eq!(request.header("webhook-id"), event, "one webhook-id across retries");
        request.verify(SECRET).unwrap();
    }
    // The schedule ±20 %, plus up to a poll and a claim on a busy machine.
    let gaps = [received[1].at - received[0].at, received[2].at - received[1].at];
    assert!(
        gaps[0] >= Duration::from_millis(800) && gaps[0] <= Duration::from_millis(2200),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1600) && gaps[1] <= Duration::from_millis(3400),
        "{gaps:?}"
    );
    let attempts = endpoints::attempts(pool, &failing_id).await;
    assert_eq!(attempts.len(), 3);
    assert!(attempts
        .iter()
        .all(|a| a.1 == Some(503) && a.2.as_deref() == Some("HTTP 503")));

    assert_eq!(
        endpoints::delivery(pool, &event, &gone_id).await,
        Some(("failed".to_owned(), 1))
    );
    assert_eq!(gone.received().len(), 1, "410 stops at once");
    let failing_since: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT failing_since FROM webhook_endpoints WHERE id = $1")
            .bind(&failing_id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(failing_since.is_some(), "a failing endpoint is marked");
    endpoints::wait_settled(&env, WAIT).await;
    assert_eq!(failing.received().len(), 3, "nothing after the last attempt");
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled_and_its_pending_deliveries_fail() {
    let env = TestEnv::spawn(Options {
        schedule: "1s,1s,1s,1s",
        endpoints: webhook_worker::config::EndpointConfig {
            disable_after: Duration::from_secs(3600),
            poll: Duration::from_millis(100),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let failing = Receiver::start(|_| Reply::Status(500)).await;
    let pool = &env.app.pool;
    let id = validation(&env).await;
    let endpoint = Endpoint::new(&env.app.client, &failing.url(), SECRET)
        .insert(pool)
        .await;
    // Failing for longer than the hour it may: a success would clear it, a
    // failure disables the endpoint.
    sqlx::query("UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours' WHERE id = $1")
        .bind(&endpoint)
        .execute(pool)
        .await
        .unwrap();
    // A backlog behind the first attempt: the endpoint answers slowly enough
    // that only some are attempted before it is disabled.
    let ids = events(&env, &id, 5).await;
    failing.wait_for(1, WAIT).await;
    testkit::eventually(WAIT, "the endpoint to be disabled", || async {
        let row: (bool, Option<String>) =
            sqlx::query_as("SELECT disabled, disabled_reason FROM webhook_endpoints WHERE id = $1")
                .bind(&endpoint)
                .fetch_one(pool)
                .await
                .unwrap();
        (row == (true, Some("failing".to_owned()))).then_some(())
    })
    .await;
    endpoints::wait_settled(&env, WAIT).await;
    // Events fanned out after it was disabled have no delivery there.
    let statuses = endpoints::statuses(pool, &endpoint).await;
    assert!(
        statuses.len() == 1 && statuses[0].0 == "failed" && statuses[0].1 <= ids.len() as i64,
        "every delivery it had failed: {statuses:?}"
    );
    let attempted = failing.received().len();
    assert!(attempted <= ids.len(), "no attempt after it was disabled: {attempted}");
    let metrics = env.metrics().await;
    assert!(metrics.contains("webhook_endpoints_disabled_total 1"), "{metrics}");
    assert!(
        metrics.contains("webhook_endpoint_attempts_total{endpoint_id=\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_success_clears_failing_since() {
    let env = TestEnv::spawn(Options::default()).await;
    let receiver = Receiver::answering(200).await;
    let pool = &env.app.pool;
    let id = validation(&env).await;
    let endpoint = Endpoint::new(&env.app.client, &receiver.url(), SECRET)
        .insert(pool)
        .await;
    sqlx::query("UPDATE webhook_endpoints SET failing_since = now() - interval '1 hour' WHERE id = $1")
        .bind(&endpoint)
        .execute(pool)
        .await
        .unwrap();
    events(&env, &id, 1).await;
    receiver.wait_for(1, WAIT).await;
    testkit::eventually(WAIT, "failing_since to clear", || async {
        let row: (
            Option<chrono::DateTime<chrono::Utc>>,
            Option<chrono::DateTime<chrono::Utc>>,
        ) = sqlx::query_as("SELECT failing_since, last_success_at FROM webhook_endpoints WHERE id = $1")
            .bind(&endpoint)
            .fetch_one(pool)
            .await
            .unwrap();
        (row.0.is_none() && row.1.is_some()).then_some(())
    })
    .await;
}
