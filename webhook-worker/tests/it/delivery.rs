//! Delivery: a final status reaches the client's receiver once, signed per
//! Standard Webhooks; duplicates and dead endpoints change nothing for
//! anyone else; internal URLs are refused and the refusal is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::{Duration, Instant};
use testkit::webhooks::{BlackHole, Options, Received, Receiver, Reply, TestEnv, CODE, SECRET};

#[tokio::test]
async fn a_validated_phone_reaches_the_receiver_once_signed_per_standard_webhooks() {
    let env = TestEnv::spawn(Options::default()).await;
    let sent = delivered(&env).await;
    let (receiver, id, request) = (&sent.receiver, &sent.id, &sent.received);
    request
        .verify(SECRET)
        .expect("the signature verifies with the standardwebhooks library");
    let body = request.json();
    assert_eq!(body["type"], "phone_validation_validated");
    assert_eq!(body["object"]["_id"], id.as_str());
    assert_eq!(body["object"]["status"], "validated");
    assert_eq!(body["object"]["phone"], "62617737");
    assert!(body["object"]["validatedAt"].is_string());
    assert_eq!(body["eventId"], request.header("webhook-id").as_str());
    assert!(body["occurredAt"].as_str().unwrap().ends_with('Z'));
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);

    // The attempt is recorded and visible to the client through the API.
    env.wait_attempts(id, Duration::from_secs(5), "the delivery to be recorded", |a| {
        a.len() == 1 && a[0].2 == "delivered"
    })
    .await;
    let listed = env.app.get(&format!("/v2/webhook-deliveries?validation={id}")).await;
    assert_eq!(listed.status, reqwest::StatusCode::OK, "{:?}", listed.body);
    let data = listed.data().as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["outcome"], "delivered");
    assert_eq!(data[0]["statusCode"], 200);
    assert_eq!(data[0]["attempt"], 1);
    assert_eq!(data[0]["eventId"], request.header("webhook-id").as_str());
    assert_eq!(listed.body["pagination"]["total"], 1);
    assert_eq!(receiver.received().len(), 1);

    // The operations endpoints.
    let metrics = env.metrics().await;
    assert!(metrics.contains("webhook_delivered_total"), "{metrics}");
    assert!(metrics.contains("webhook_request_duration_seconds"));
    let health = env.app.http.get(format!("{}/health", env.health)).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn shutting_down_mid_delivery_finishes_and_records_it_first() {
    let mut env = TestEnv::spawn(Options::default()).await;
    let receiver = Receiver::start(|_| Reply::Slow(200, 1500)).await;
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({})).await;
    let id = env.validated(&project, &flow, "62617737").await;
    receiver.wait_for(1, Duration::from_secs(45)).await;

    env.worker.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(45), env.running.take().unwrap()).await;
    assert!(stopped.is_ok(), "the worker stops");
    assert_eq!(
        env.attempts(&id).await,
        vec![(0, 1, "delivered".to_owned(), Some(200))],
        "the in-flight delivery finished and was recorded before the worker stopped"
    );
}

#[tokio::test]
async fn a_validation_that_runs_out_of_attempts_is_delivered_as_failed() {
    let env = TestEnv::spawn(Options::default()).await;
    let receiver = Receiver::answering(204).await;
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({"maxAttempts": 1})).await;
    let id = env.create(&project, &flow, "62617737", None).await;
    env.app.store_code(&id, CODE).await;
    let wrong = env.app.validate("62617737", json!("000000")).await;
    assert_eq!(wrong.message(), "403:max_attempts_exceeded");

    let received = receiver.wait_for(1, Duration::from_secs(45)).await;
    received[0].verify(SECRET).expect("the signature verifies");
    let body = received[0].json();
    assert_eq!(body["type"], "phone_validation_failed");
    assert_eq!(body["object"]["_id"], id.as_str());
    assert_eq!(body["object"]["status"], "failed");
    assert_eq!(body["object"]["failedReason"], "max_attempts_exceeded");
}

#[tokio::test]
async fn while_a_secret_is_rotated_both_the_old_and_the_new_one_verify() {
    let env = TestEnv::spawn(Options::default()).await;
    let new_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    sqlx::query(
        "UPDATE clients SET previous_webhook_secret = webhook_secret, webhook_secret = $2,
                previous_webhook_secret_expires_at = now() + interval '1 hour' WHERE id = $1",
    )
    .bind(&env.app.client)
    .bind(
        testkit::api::webhook_secret_keys()
            .seal(&env.app.client.to_string(), new_secret)
            .unwrap(),
    )
    .execute(&env.app.pool)
    .await
    .unwrap();
    let received = delivered(&env).await.received;
    assert_eq!(received.header("webhook-signature").split(' ').count(), 2);
    received.verify(new_secret).expect("the new secret verifies");
    received.verify(SECRET).expect("the previous secret still verifies");
}

#[tokio::test]
async fn in_the_upgrade_window_a_plaintext_secret_from_before_encryption_is_sealed_at_start_and_still_signs() {
    let env = TestEnv::spawn(Options::default()).await;
    let stored = |pool: sqlx::PgPool, client: shared::ObjectId| async move {
        sqlx::query_scalar::<_, String>("SELECT webhook_secret FROM clients WHERE id = $1")
            .bind(&client)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let sealed = stored(env.app.pool.clone(), env.app.client.clone()).await;
    assert!(sealed.starts_with("enc:v1:") && !sealed.contains("dGVzdA"), "{sealed}");

    // A row as it was before encryption; a worker starting in the upgrade
    // window (WEBHOOK_ACCEPT_PLAINTEXT_SECRETS) seals it.
    sqlx::query("UPDATE clients SET webhook_secret = $2 WHERE id = $1")
        .bind(&env.app.client)
        .bind(SECRET)
        .execute(&env.app.pool)
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut config = TestEnv::worker_config(&env.app, &Options::default());
    config.secret_keys = config.secret_keys.accepting_plaintext(true);
    let second = <webhook_worker::WebhookWorker as shared::process::Service>::build(
        config,
        env.app.topology.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    let resealed = stored(env.app.pool.clone(), env.app.client.clone()).await;
    assert!(resealed.starts_with("enc:v1:"), "{resealed}");
    assert!(!resealed.contains("dGVzdA"), "{resealed}");
    stop.cancel();
    shared::process::Service::run(second).await.unwrap();

    let received = delivered(&env).await.received;
    received.verify(SECRET).expect("the plain secret verifies");
}

#[tokio::test]
async fn redelivering_a_delivered_events_message_posts_nothing() {
    // One message at a time, so the second event is handled after the duplicate.
    let env = one_at_a_time().await;
    let sent = delivered(&env).await;
    let (receiver, project, flow, first) = (&sent.receiver, &sent.project, &sent.flow, sent.received.json());

    // The same event message again, as a broker redelivery or a second outbox publish would bring it.
    let event = json!({
        "eventId": first["eventId"],
        "type": first["type"],
        "occurredAt": first["occurredAt"],
        "data": first["object"],
    });
    let event_id = first["eventId"].as_str().unwrap();
    env.publish_to_work_queue(&serde_json::to_vec(&event).unwrap(), event_id)
        .await;
    env.validated(project, flow, "62617738").await;

    let received = receiver.wait_for(2, Duration::from_secs(45)).await;
    assert_eq!(received.len(), 2, "the duplicate was not POSTed");
    assert_ne!(received[0].header("webhook-id"), received[1].header("webhook-id"));
    assert_eq!(received[1].json()["object"]["phone"], "62617738");
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_another_clients_deliveries() {
    let env = TestEnv::spawn(Options {
        timeout: Duration::from_secs(30),
        per_host: 2,
        prefetch: 16,
        ..Options::default()
    })
    .await;
    let dead = BlackHole::start().await;
    let healthy = Receiver::answering(200).await;
    let (dead_project, dead_flow) = env.flow_with_webhook(&dead.url(), json!({})).await;
    for n in 0..6 {
        env.validated(&dead_project, &dead_flow, &format!("6261{:04}", 7000 + n))
            .await;
    }
    testkit::eventually(
        Duration::from_secs(10),
        "the dead endpoint to hold requests",
        || async { (dead.accepted() >= 2).then_some(()) },
    )
    .await;

    // Another client, another host.
    let other = testkit::create_client(&env.app.pool, "Other").await;
    let token = env.app.jwt.client_token(&other, 0, 1).unwrap();
    let project = env
        .post_as(&token, "/v2/projects", json!({"name": "Other"}))
        .await
        .data()["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let flow = env
        .post_as(
            &token,
            "/v2/project-flows",
            json!({"project": project, "type": "login", "phone": {"webhookUrl": healthy.url()}}),
        )
        .await
        .data()["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = env
        .post_as(
            &token,
            "/v2/phone-validations",
            testkit::TestApp::create_body(&project, &flow, "62618888"),
        )
        .await;
    let id = created.data()["_id"].as_str().unwrap().to_owned();
    env.app.store_code(&id, CODE).await;
    let started = Instant::now();
    let validated = env
        .post_as(
            &token,
            "/v2/phone-validations/validate",
            json!({"phone": "62618888", "countryCode": "+507", "otp": CODE}),
        )
        .await;
    assert_eq!(validated.status, reqwest::StatusCode::OK, "{:?}", validated.body);

    healthy.wait_for(1, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the healthy delivery took {took:?}");
    assert_eq!(
        dead.accepted(),
        2,
        "no more than the per-host limit is spent on the dead endpoint"
    );
}

#[tokio::test]
async fn internal_urls_are_refused_and_the_refusal_is_recorded() {
    let env = TestEnv::spawn(Options {
        allow_private: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::answering(200).await;
    // A hostname that resolves to loopback, and an IPv4-mapped loopback literal.
    let by_name = format!("http://localhost:{}/webhooks", receiver.addr.port());
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/webhooks", receiver.addr.port());
    let (project, flow) = env.flow_with_webhook(&by_name, json!({})).await;
    let named = env.validated(&project, &flow, "62617737").await;
    let literal = env.create(&project, &flow, "62617738", Some(&mapped)).await;
    env.app.store_code(&literal, CODE).await;
    assert_eq!(
        env.app.validate("62617738", json!(CODE)).await.status,
        reqwest::StatusCode::OK
    );

    for id in [&named, &literal] {
        let attempts = env
            .wait_attempts(id, Duration::from_secs(45), "the refusal to be recorded", |a| {
                a.len() == 1 && a[0].2 == "refused"
            })
            .await;
        assert_eq!(attempts[0].3, None);
        let listed = env.app.get(&format!("/v2/webhook-deliveries?validation={id}")).await;
        assert_eq!(listed.data()[0]["outcome"], "refused");
        assert!(listed.data()[0]["error"].as_str().unwrap().contains("public"));
    }
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
    let parked = testkit::drain(&env.app.amqp, &env.dead_letter_queue()).await;
    assert_eq!(
        parked.len(),
        2,
        "refused events stay replayable in the dead-letter queue"
    );
}

#[tokio::test]
async fn the_delivery_list_is_tenant_isolated() {
    let env = TestEnv::spawn(Options::default()).await;
    let id = delivered(&env).await.id;

    let other = testkit::create_client(&env.app.pool, "Other").await;
    let token = env.app.jwt.client_token(&other, 0, 1).unwrap();
    let foreign = env
        .app
        .request(
            reqwest::Method::GET,
            &format!("/v2/webhook-deliveries?validation={id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(foreign.status, reqwest::StatusCode::NOT_FOUND);
    let missing = env.app.get("/v2/webhook-deliveries").await;
    assert_eq!(missing.status, reqwest::StatusCode::CONFLICT);
    let bad = env.app.get("/v2/webhook-deliveries?validation=nope").await;
    assert_eq!(bad.message(), "400:invalid_validation");
}

#[tokio::test]
async fn a_forged_event_gets_the_stored_validation_signed_or_nothing() {
    let env = one_at_a_time().await;
    let sent = delivered(&env).await;
    let (receiver, project, flow, validated) = (&sent.receiver, &sent.project, &sent.flow, &sent.id);
    let failed = env.create(project, flow, "62617738", None).await;
    env.app.store_code(&failed, CODE).await;

    // Someone who can publish to the broker tries to get the client's
    // signature on content of their choosing, for a real validation.
    let forged_id = shared::ObjectId::new().to_string();
    let forged = json!({
        "eventId": forged_id,
        "type": "phone_validation_validated",
        "occurredAt": "2026-01-01T00:00:00.000Z",
        "data": {"_id": validated, "phone": "66666666", "status": "validated", "name": "attacker"},
    });
    env.publish_to_work_queue(&serde_json::to_vec(&forged).unwrap(), &forged_id)
        .await;
    let received = receiver.wait_for(2, Duration::from_secs(45)).await;
    let object = &received[1].json()["object"];
    assert_eq!(object["phone"], "62617737", "the stored validation, not the message's");
    assert!(object.get("name").is_none());
    received[1].verify(SECRET).unwrap();

    // A `validated` event for a validation that is not validated is refused outright.
    let lie_id = shared::ObjectId::new().to_string();
    let lie = json!({
        "eventId": lie_id,
        "type": "phone_validation_validated",
        "occurredAt": "2026-01-01T00:00:00.000Z",
        "data": {"_id": failed},
    });
    env.publish_to_work_queue(&serde_json::to_vec(&lie).unwrap(), &lie_id)
        .await;
    testkit::eventually(Duration::from_secs(20), "the lie to be dead-lettered", || async {
        (env.ready_count(&env.dead_letter_queue()).await == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.received().len(), 2, "nothing posted for it");
}

/// A worker that handles one message at a time.
async fn one_at_a_time() -> TestEnv {
    TestEnv::spawn(Options {
        prefetch: 1,
        ..Options::default()
    })
    .await
}

/// A validation whose webhook reached its receiver.
struct Delivered {
    /// Answers 200 to everything.
    receiver: Receiver,
    project: String,
    flow: String,
    id: String,
    /// The one request the receiver got.
    received: Received,
}

/// A receiver, a flow whose webhook posts to it, and one validation
/// validated, once its webhook has arrived.
async fn delivered(env: &TestEnv) -> Delivered {
    let receiver = Receiver::answering(200).await;
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({})).await;
    let id = env.validated(&project, &flow, "62617737").await;
    let received = receiver.wait_for(1, Duration::from_secs(45)).await.remove(0);
    Delivered {
        receiver,
        project,
        flow,
        id,
        received,
    }
}
