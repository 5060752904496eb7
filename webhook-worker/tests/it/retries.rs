//! Retries: failures retry on the schedule through delay queues with the same
//! `webhook-id`, an endpoint that comes back gets every event once, 410 stops
//! at once, and an event that exhausts its schedule is dead-lettered and can
//! be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::Topology;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::webhooks::{Options, Receiver, Reply, TestEnv, SECRET};

#[tokio::test]
async fn a_receiver_answering_500_500_200_gets_three_attempts_on_schedule_with_one_webhook_id() {
    let env = TestEnv::spawn(Options {
        schedule: "1s,2s",
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({})).await;
    let id = env.validated(&project, &flow, "62617737").await;

    let received = receiver.wait_for(3, Duration::from_secs(45)).await;
    let ids: Vec<String> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id across retries: {ids:?}"
    );
    for request in &received {
        request.verify(SECRET).expect("every attempt is signed");
    }
    // Gaps follow the schedule ±20 %, plus up to 0.8 s for the round trip through RabbitMQ on a busy machine.
    let first_gap = received[1].at - received[0].at;
    let second_gap = received[2].at - received[1].at;
    assert!(
        first_gap >= Duration::from_millis(800) && first_gap <= Duration::from_millis(2000),
        "first gap {first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(1600) && second_gap <= Duration::from_millis(3200),
        "second gap {second_gap:?}"
    );

    let attempts = env
        .wait_attempts(&id, Duration::from_secs(5), "three recorded attempts", |a| {
            a.len() == 3 && a[2].2 == "delivered"
        })
        .await;
    assert_eq!(
        attempts,
        vec![
            (0, 1, "retrying".to_owned(), Some(500)),
            (0, 2, "retrying".to_owned(), Some(500)),
            (0, 3, "delivered".to_owned(), Some(200)),
        ]
    );
    let listed = env.app.get(&format!("/v2/webhook-deliveries?validation={id}")).await;
    assert_eq!(listed.data()[2]["outcome"], "retrying");
    assert!(listed.data()[2]["nextAttemptAt"].is_string());
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn an_endpoint_down_for_several_attempts_gets_the_event_once_it_is_back() {
    let env = TestEnv::spawn(Options {
        schedule: "1s,1s,1s,1s,1s,1s,1s,1s",
        ..Options::default()
    })
    .await;
    let receiver = Receiver::answering(200).await;
    let proxy = testkit::Proxy::start(receiver.addr, false).await;
    let url = format!("http://{}/webhooks", proxy.addr);
    let (project, flow) = env.flow_with_webhook(&url, json!({})).await;
    let id = env.validated(&project, &flow, "62617737").await;

    env.wait_attempts(&id, Duration::from_secs(45), "three failed attempts", |a| {
        a.iter().filter(|x| x.2 == "retrying").count() >= 3
    })
    .await;
    assert!(receiver.received().is_empty());
    proxy.set_up(true);

    let attempts = env
        .wait_attempts(&id, Duration::from_secs(45), "the delivery", |a| {
            a.last().is_some_and(|x| x.2 == "delivered")
        })
        .await;
    assert!(attempts.len() >= 4);
    assert!(attempts[..attempts.len() - 1]
        .iter()
        .all(|a| a.2 == "retrying" && a.3.is_none()));
    assert_eq!(receiver.received().len(), 1, "delivered exactly once");
}

#[tokio::test]
async fn a_410_stops_after_one_attempt() {
    let env = TestEnv::spawn(Options::default()).await;
    let receiver = Receiver::answering(410).await;
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({})).await;
    let id = env.validated(&project, &flow, "62617737").await;

    let attempts = env
        .wait_attempts(&id, Duration::from_secs(45), "the 410 to be recorded", |a| {
            a.len() == 1 && a[0].2 == "gone"
        })
        .await;
    assert_eq!(attempts[0].3, Some(410));
    // Nothing waits for another try: every delay tier and the dead-letter queue are empty.
    let queue = env.webhook_queue();
    for tier in [1000u64, 2000] {
        let name = Topology::retry_queue(&queue, Duration::from_millis(tier * 12 / 10));
        assert_eq!(env.ready_count(&name).await, 0, "{name} is empty");
    }
    assert_eq!(env.ready_count(&env.dead_letter_queue()).await, 0);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn an_event_that_always_fails_is_dead_lettered_and_a_replay_delivers_it() {
    let env = TestEnv::spawn(Options {
        schedule: "1s,1s",
        ..Options::default()
    })
    .await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = {
        let healthy = healthy.clone();
        Receiver::start(move |_| Reply::Status(if healthy.load(Ordering::SeqCst) { 200 } else { 500 })).await
    };
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({})).await;
    let id = env.validated(&project, &flow, "62617737").await;

    let attempts = env
        .wait_attempts(&id, Duration::from_secs(45), "the last attempt", |a| {
            a.last().is_some_and(|x| x.2 == "dead_lettered")
        })
        .await;
    assert_eq!(attempts.len(), 3, "1 + 2 scheduled retries");

    let channel = env.app.amqp.create_channel().await.unwrap();
    let dlq = env.dead_letter_queue();
    let listed = webhook_worker::dlq::list(&channel, &dlq, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["headers"]["x-dead-letter-reason"], "attempts_exhausted");
    assert_eq!(listed[0]["headers"]["x-last-status"], "500");
    assert_eq!(listed[0]["body"]["data"]["_id"], id.as_str());

    healthy.store(true, Ordering::SeqCst);
    let channel = env.app.amqp.create_channel().await.unwrap();
    let replayed = webhook_worker::dlq::replay(&channel, &dlq, &env.webhook_queue(), 10)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);

    let attempts = env
        .wait_attempts(&id, Duration::from_secs(45), "the replayed delivery", |a| {
            a.last().is_some_and(|x| x.2 == "delivered")
        })
        .await;
    assert_eq!(attempts.last().unwrap().0, 1, "the replay is round 1");
    assert_eq!(attempts.last().unwrap().1, 1, "with a fresh schedule");
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert!(received
        .iter()
        .all(|r| r.header("webhook-id") == received[0].header("webhook-id")));
    assert_eq!(env.ready_count(&dlq).await, 0);
}
