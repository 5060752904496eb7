//! Webhook endpoints' signatures (docs/contract.md §13, §8): each endpoint
//! signs with its own secret; while a rotation overlaps, with the new and
//! the old one (`v1,<new> v1,<old>`), each verified by the official
//! `standardwebhooks` library; after the overlap, with the new one alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::domain::WebhookEventType;
use std::time::Duration;
use testkit::webhook_endpoints::{self as endpoints, Endpoint};
use testkit::webhooks::{Options, Receiver, TestEnv, SECRET};

const WAIT: Duration = Duration::from_secs(30);
const OLD: &str = "whsec_b2xkLXNlY3JldC1mb3ItdGhlLWVuZHBvaW50";
const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() {
    let env = TestEnv::spawn(Options::default()).await;
    let (project, flow) = env.app.project_and_flow(json!({})).await;
    let id = env.create(&project, &flow, "62617737", None).await;
    let receiver = Receiver::answering(200).await;
    let pool = &env.app.pool;
    let endpoint = Endpoint::new(&env.app.client, &receiver.url(), OLD).insert(pool).await;
    let publish = || endpoints::publish_lifecycle(&env.app.amqp, &env.app.topology, WebhookEventType::Sent, &id);

    publish().await;
    let before = &receiver.wait_for(1, WAIT).await[0];
    assert_eq!(before.header("webhook-signature").split(' ').count(), 1);
    before.verify(OLD).expect("the endpoint's secret verifies");
    assert!(before.verify(SECRET).is_err(), "not the client's secret");

    endpoints::rotate(pool, &endpoint, NEW, 3600.0).await;
    publish().await;
    let during = &receiver.wait_for(2, WAIT).await[1];
    let signature = during.header("webhook-signature");
    let parts: Vec<&str> = signature.split(' ').collect();
    assert_eq!(parts.len(), 2, "{signature}");
    assert!(parts.iter().all(|p| p.starts_with("v1,")));
    during.verify(NEW).expect("the new secret verifies");
    during.verify(OLD).expect("the old secret still verifies");
    // The new one first.
    let only_new = during.with_signature(parts[0]);
    only_new.verify(NEW).expect("the first signature is the new secret's");

    // The overlap over: the new secret alone.
    sqlx::query("UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(&endpoint)
        .execute(pool)
        .await
        .unwrap();
    publish().await;
    let after = &receiver.wait_for(3, WAIT).await[2];
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    after.verify(NEW).unwrap();
    assert!(after.verify(OLD).is_err(), "the old secret no longer signs");
}
