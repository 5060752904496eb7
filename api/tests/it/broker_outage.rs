//! A RabbitMQ outage costs latency, never an accepted request: the API answers
//! 200 while the broker is unreachable, and once it is back every accepted
//! request's event is published exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use testkit::{Proxy, TestApp};

#[tokio::test]
async fn creates_succeed_while_the_broker_is_down_and_each_event_is_published_once_it_is_back() {
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = Proxy::start(broker, false).await;
    let app = TestApp::spawn_with(testkit::topology(), &format!("amqp://guest:guest@{}/%2f", proxy.addr)).await;
    // The queues exist already (a dispatcher declared them), as in production.
    let declare = app.amqp.create_channel().await.unwrap();
    app.topology.declare(&declare).await.unwrap();

    let (project, flow) = app.project_and_flow(json!({"resendCooldownSeconds": 0})).await;
    let ready = app.ready().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["broker"], false);

    let mut accepted = Vec::new();
    for phone in ["62617731", "62617732", "62617733", "62617734", "62617735"] {
        accepted.push(
            app.create_validation(&project, &flow, phone).await["_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let waiting = app.count("outbox").await;
    assert_eq!(waiting, 5, "every accepted request's event is kept");

    proxy.set_up(true);
    app.wait_for_broker().await;
    // One more while the broker is up: the fast path.
    accepted.push(
        app.create_validation(&project, &flow, "62617736").await["_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    app.wait_outbox_empty().await;

    let messages = app.drain(&app.topology.dispatch_queue()).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        *seen
            .entry(message["validationId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &accepted {
        assert_eq!(seen.get(id), Some(&1), "{id} published exactly once: {seen:?}");
    }
    assert_eq!(messages.len(), accepted.len());

    // Drop the broker mid-flight and bring it back: the connection recovers.
    proxy.set_up(false);
    testkit::eventually(Duration::from_secs(10), "the API to notice the outage", || async {
        (app.ready().await.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let during = app.create_validation(&project, &flow, "62617739").await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    proxy.set_up(true);
    app.wait_for_broker().await;
    app.wait_outbox_empty().await;
    let messages = app.drain(&app.topology.dispatch_queue()).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["validationId"], during.as_str());
}
