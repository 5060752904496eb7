//! Webhook endpoints, fan-out (docs/contract.md §13): an event reaches every
//! enabled endpoint of its client that subscribes to its type and project,
//! once, with one `webhook-id`; the flow's `webhookUrl` still gets only
//! what §8 sends; a redelivered event adds nothing; a resend delivers again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::domain::WebhookEventType;
use std::time::Duration;
use testkit::webhook_endpoints::{self as endpoints, Endpoint};
use testkit::webhooks::{Options, Receiver, TestEnv, SECRET};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_workers_statements_prepare_against_the_migrated_schema() {
    let (_, pool) = testkit::database().await;
    let refused = testkit::schema::unprepared(&pool, &webhook_worker::store::statements()).await;
    assert!(refused.is_empty(), "{refused:#?}");
}

#[tokio::test]
async fn an_event_fans_out_to_the_endpoints_that_want_it_each_once_with_one_webhook_id() {
    let env = TestEnv::spawn(Options::default()).await;
    let legacy = Receiver::answering(200).await;
    let (project, flow) = env.flow_with_webhook(&legacy.url(), json!({"maxAttempts": 1})).await;
    let (other_project, _) = env.app.project_and_flow(json!({})).await;
    let client = &env.app.client;
    let (all, validated_only, this_project, sent_only, other) = (
        Receiver::answering(200).await,
        Receiver::answering(204).await,
        Receiver::answering(202).await,
        Receiver::answering(200).await,
        Receiver::answering(200).await,
    );
    let pool = &env.app.pool;
    let all_id = Endpoint::new(client, &all.url(), SECRET).insert(pool).await;
    let validated_id = Endpoint::new(client, &validated_only.url(), SECRET)
        .types(&["phone_validation_validated"])
        .insert(pool)
        .await;
    Endpoint::new(client, &this_project.url(), SECRET)
        .project(&project)
        .insert(pool)
        .await;
    Endpoint::new(client, &sent_only.url(), SECRET)
        .types(&["phone_validation_sent"])
        .insert(pool)
        .await;
    Endpoint::new(client, &other.url(), SECRET)
        .project(&other_project)
        .insert(pool)
        .await;
    // Another client's endpoint, and a disabled one of this client's: neither gets anything.
    let stranger = testkit::create_client(pool, "Stranger").await;
    Endpoint::new(&stranger, &other.url(), SECRET).insert(pool).await;
    let disabled = Endpoint::new(client, &other.url(), SECRET).insert(pool).await;
    sqlx::query("UPDATE webhook_endpoints SET disabled = true, disabled_reason = 'manual' WHERE id = $1")
        .bind(&disabled)
        .execute(pool)
        .await
        .unwrap();

    let id = env.validated(&project, &flow, "62617737").await;
    let legacy_request = &legacy.wait_for(1, WAIT).await[0];
    let event_id = legacy_request.header("webhook-id");
    for receiver in [&all, &validated_only, &this_project] {
        let request = &receiver.wait_for(1, WAIT).await[0];
        request.verify(SECRET).expect("signed per Standard Webhooks");
        assert_eq!(request.header("webhook-id"), event_id, "the same webhook-id everywhere");
        let body = request.json();
        assert_eq!(body["type"], "phone_validation_validated");
        assert_eq!(body["eventId"], event_id.as_str());
        assert_eq!(body["object"]["_id"], id.as_str());
        assert_eq!(body["object"]["status"], "validated");
        assert_eq!(body, legacy_request.json(), "the body the webhookUrl gets");
    }
    let stored = endpoints::message(pool, &event_id).await.unwrap();
    assert_eq!(stored.0, "phone_validation_validated");
    assert_eq!(stored.1.as_deref(), Some(project.as_str()));
    assert_eq!(stored.2, all.received()[0].json(), "the payload is the body POSTed");
    testkit::eventually(WAIT, "the deliveries to be recorded", || async {
        let done = endpoints::delivery(pool, &event_id, &all_id).await;
        (done == Some(("delivered".to_owned(), 1))).then_some(())
    })
    .await;
    assert_eq!(
        endpoints::delivery(pool, &event_id, &validated_id).await,
        Some(("delivered".to_owned(), 1))
    );
    let attempts = endpoints::attempts(pool, &validated_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].1, Some(204));

    // A lifecycle event goes to the endpoints that want it, never to the webhookUrl.
    let sent = endpoints::publish_lifecycle(&env.app.amqp, &env.app.topology, WebhookEventType::Sent, &id).await;
    let request = &sent_only.wait_for(1, WAIT).await[0];
    request.verify(SECRET).unwrap();
    assert_eq!(request.header("webhook-id"), sent);
    assert_eq!(request.json()["type"], "phone_validation_sent");
    assert_eq!(request.json()["object"]["_id"], id.as_str());
    all.wait_for(2, WAIT).await;
    this_project.wait_for(2, WAIT).await;

    // A failed validation: the webhookUrl gets it as before.
    let failed = env.create(&project, &flow, "62617738", None).await;
    env.app.store_code(&failed, testkit::webhooks::CODE).await;
    env.app.validate("62617738", json!("000000")).await;
    let legacy_failed = legacy.wait_for(2, WAIT).await;
    assert_eq!(legacy_failed[1].json()["type"], "phone_validation_failed");
    all.wait_for(3, WAIT).await;
    this_project.wait_for(3, WAIT).await;

    // Nothing more anywhere: each event once per endpoint.
    endpoints::wait_settled(&env, WAIT).await;
    assert_eq!(
        legacy.received().len(),
        2,
        "the webhookUrl got validated and failed only"
    );
    assert_eq!(all.received().len(), 3);
    assert_eq!(this_project.received().len(), 3);
    assert_eq!(validated_only.received().len(), 1);
    assert_eq!(sent_only.received().len(), 1);
    assert!(
        other.received().is_empty(),
        "another project's, another client's, a disabled endpoint"
    );
    let ids: std::collections::HashSet<String> = all.received().iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn a_redelivered_event_adds_nothing_and_a_resend_delivers_again_with_the_same_webhook_id() {
    let env = TestEnv::spawn(Options::default()).await;
    let (project, flow) = env.app.project_and_flow(json!({})).await;
    let receiver = Receiver::answering(200).await;
    let endpoint = Endpoint::new(&env.app.client, &receiver.url(), SECRET)
        .insert(&env.app.pool)
        .await;
    let id = env.create(&project, &flow, "62617737", None).await;
    let event = endpoints::publish_lifecycle(&env.app.amqp, &env.app.topology, WebhookEventType::Sent, &id).await;
    receiver.wait_for(1, WAIT).await;
    testkit::eventually(WAIT, "the delivery to be recorded", || async {
        let done = endpoints::delivery(&env.app.pool, &event, &endpoint).await;
        (done == Some(("delivered".to_owned(), 1))).then_some(())
    })
    .await;

    // The same message again (a broker redelivery).
    let again = json!({"eventId": event, "type": "phone_validation_sent",
        "occurredAt": "2026-01-01T00:00:00.000Z", "data": {"_id": id}});
    env.publish_to_work_queue(&serde_json::to_vec(&again).unwrap(), &event)
        .await;
    // Then a resend, as the API's: the delivery back to pending, due now.
    testkit::eventually(WAIT, "the redelivery to be consumed", || async {
        (env.ready_count(&env.webhook_queue()).await == 0).then_some(())
    })
    .await;
    endpoints::resend(&env.app.pool, &event, &endpoint).await;
    let received = receiver.wait_for(2, WAIT).await;
    assert_eq!(received[1].header("webhook-id"), event);
    assert_eq!(
        received[0].body, received[1].body,
        "the stored payload, not the redelivered message"
    );
    received[1].verify(SECRET).unwrap();
    testkit::eventually(WAIT, "the resend to be recorded", || async {
        let done = endpoints::delivery(&env.app.pool, &event, &endpoint).await;
        (done == Some(("delivered".to_owned(), 1))).then_some(())
    })
    .await;
    assert_eq!(endpoints::attempts(&env.app.pool, &endpoint).await.len(), 2);
    assert_eq!(receiver.received().len(), 2, "the redelivered message posted nothing");
}
