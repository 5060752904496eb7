//! Retention (`WEBHOOK_RETENTION_DAYS`): a worker purges webhook messages
//! (their deliveries with them) and attempts older than that, and leaves
//! younger ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::domain::WebhookEventType;
use std::time::Duration;
use testkit::webhook_endpoints::{self as endpoints, Endpoint};
use testkit::webhooks::{Options, Receiver, TestEnv, SECRET};

#[tokio::test]
async fn messages_and_attempts_past_the_retention_are_purged() {
    let env = TestEnv::spawn(Options {
        endpoints: webhook_worker::config::EndpointConfig {
            purge_every: Duration::from_secs(1),
            poll: Duration::from_millis(100),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let (project, flow) = env.app.project_and_flow(json!({})).await;
    let id = env.create(&project, &flow, "62617737", None).await;
    let receiver = Receiver::answering(200).await;
    let pool = &env.app.pool;
    let endpoint = Endpoint::new(&env.app.client, &receiver.url(), SECRET)
        .insert(pool)
        .await;
    let mut events = Vec::new();
    for _ in 0..3 {
        let kind = WebhookEventType::Sent;
        events.push(endpoints::publish_lifecycle(&env.app.amqp, &env.app.topology, kind, &id).await);
    }
    receiver.wait_for(3, Duration::from_secs(30)).await;
    endpoints::wait_settled(&env, Duration::from_secs(30)).await;

    // Two of them 31 days old (the default retention is 30), one recent.
    let (old, recent) = (&events[..2], &events[2]);
    sqlx::query("UPDATE webhook_messages SET created_at = now() - interval '31 days' WHERE event_id = ANY($1)")
        .bind(old)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE webhook_endpoint_attempts SET attempted_at = now() - interval '31 days' WHERE event_id = ANY($1)",
    )
    .bind(old)
    .execute(pool)
    .await
    .unwrap();

    testkit::eventually(Duration::from_secs(30), "the old rows to be purged", || async {
        let messages: Vec<String> = sqlx::query_scalar("SELECT event_id FROM webhook_messages")
            .fetch_all(pool)
            .await
            .unwrap();
        (messages == vec![recent.clone()]).then_some(())
    })
    .await;
    testkit::eventually(Duration::from_secs(30), "the old attempts to be purged", || async {
        let attempts = endpoints::attempts(pool, &endpoint).await;
        (attempts.len() == 1 && attempts[0].0 == *recent).then_some(())
    })
    .await;
    let deliveries: Vec<String> = sqlx::query_scalar("SELECT event_id FROM webhook_endpoint_deliveries")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(deliveries, vec![recent.clone()], "deliveries go with their message");
}
