//! `rateLimitPerSecond` (docs/contract.md §13) holds across workers: two
//! worker instances together deliver no more than the limit in any second
//! (by the receiver's clock), and the excess waits: nothing is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::domain::WebhookEventType;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use testkit::webhook_endpoints::{self as endpoints, Endpoint};
use testkit::webhooks::{start_worker, Options, Receiver, TestEnv, SECRET};

const LIMIT: usize = 4;
const EVENTS: usize = 24;

#[tokio::test]
async fn two_workers_together_keep_an_endpoints_rate_limit_and_drop_nothing() {
    let env = TestEnv::spawn(Options::default()).await;
    let (_second, _running, _) = start_worker(&env.app, &Options::default()).await;
    let (project, flow) = env.app.project_and_flow(json!({})).await;
    let id = env.create(&project, &flow, "62617737", None).await;
    let limited = Receiver::answering(200).await;
    let free = Receiver::answering(200).await;
    let pool = &env.app.pool;
    let limited_id = Endpoint::new(&env.app.client, &limited.url(), SECRET)
        .rate_limit(LIMIT as i32)
        .insert(pool)
        .await;
    Endpoint::new(&env.app.client, &free.url(), SECRET).insert(pool).await;

    let mut sent = HashSet::new();
    for _ in 0..EVENTS {
        let kind = WebhookEventType::Sent;
        sent.insert(endpoints::publish_lifecycle(&env.app.amqp, &env.app.topology, kind, &id).await);
    }
    // The unlimited endpoint is not held back by its neighbour's limit.
    free.wait_for(EVENTS, Duration::from_secs(10)).await;
    limited.wait_for(EVENTS, Duration::from_secs(60)).await;
    endpoints::wait_settled(&env, Duration::from_secs(30)).await;

    let received = limited.received();
    assert_eq!(received.len(), EVENTS, "each event once");
    let ids: HashSet<String> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, sent, "nothing dropped, nothing twice");
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for request in &received {
        *per_second.entry(request.wall.timestamp()).or_default() += 1;
    }
    assert!(
        per_second.values().all(|n| *n <= LIMIT),
        "at most {LIMIT} a second: {per_second:?}"
    );
    let first = received.iter().map(|r| r.wall).min().unwrap();
    let last = received.iter().map(|r| r.wall).max().unwrap();
    assert!(
        last - first >= chrono::Duration::milliseconds(4000),
        "{EVENTS} at {LIMIT}/s take at least 5 windows: {per_second:?}"
    );
    let charged: i32 = sqlx::query_scalar("SELECT rate_used FROM webhook_endpoints WHERE id = $1")
        .bind(&limited_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(charged as usize <= LIMIT);
}
