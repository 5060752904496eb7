//! SIGTERM in the middle of a burst: the API stops taking requests, answers
//! the ones it took, and publishes every accepted event before it closes its
//! broker connection, so nothing accepted is lost or left unpublished.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use serde_json::{json, Value};
use shared::amqp::Topology;
use shared::ObjectId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::api::JWT_SECRET;
use testkit::process::{free_port, Running};

#[tokio::test]
async fn sigterm_mid_burst_publishes_every_accepted_create() {
    let (database_url, pool) = testkit::database().await;
    let prefix = format!("test.shutdown.{}.", ObjectId::new());
    let topology = Topology::new(prefix.clone());
    let (port, ops_port) = (free_port(), free_port());
    let mut api = Running::start(
        env!("CARGO_BIN_EXE_api"),
        &[
            ("DATABASE_URL", database_url.clone()),
            ("AMQP_URL", testkit::amqp_url()),
            ("AMQP_PREFIX", prefix.clone()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("OPS_ADDR", format!("127.0.0.1:{ops_port}")),
            ("JWT_SECRET", JWT_SECRET.into()),
            ("OTP_PEPPER", testkit::api::PEPPER.into()),
            ("WEBHOOK_SECRET_KEY", testkit::api::WEBHOOK_SECRET_KEY.into()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    testkit::eventually(Duration::from_secs(20), "the API to be ready", || async {
        let ready = http
            .get(format!("http://127.0.0.1:{ops_port}/ready"))
            .send()
            .await
            .ok()?;
        ready.status().is_success().then_some(())
    })
    .await;
    let client = testkit::create_client(&pool, "Acme").await;
    let token = api::auth::Jwt::new(&secrecy::SecretString::from(JWT_SECRET))
        .client_token(&client, 0, 1)
        .unwrap();
    let post = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move |path: &str, body: Value| {
            http.post(format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        }
    };
    let project: Value = post("/v2/projects", json!({"name": "Acme"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = project["data"]["_id"].as_str().unwrap().to_owned();
    let flow: Value = post("/v2/project-flows", json!({"project": project, "type": "login"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flow = flow["data"]["_id"].as_str().unwrap().to_owned();

    // 400 creates from 40 concurrent callers; SIGTERM once 100 are answered.
    const CREATES: usize = 400;
    let answered = Arc::new(AtomicUsize::new(0));
    let creates: Vec<_> = (0..CREATES)
        .map(|n| {
            let body = testkit::TestApp::create_body(&project, &flow, &format!("6{:07}", 2_000_000 + n));
            (answered.clone(), post("/v2/phone-validations", body))
        })
        .collect();
    let creates = creates.into_iter().map(|(answered, request)| async move {
        let response = request.await.ok()?;
        answered.fetch_add(1, Ordering::Relaxed);
        let status = response.status();
        let body: Value = response.json().await.ok()?;
        status
            .is_success()
            .then(|| body["data"]["_id"].as_str().unwrap().to_owned())
    });
    let burst = tokio::spawn(async move {
        futures_util::stream::iter(creates)
            .buffer_unordered(40)
            .collect::<Vec<Option<String>>>()
            .await
    });
    testkit::eventually(Duration::from_secs(30), "100 creates answered", || async {
        (answered.load(Ordering::Relaxed) >= 100).then_some(())
    })
    .await;
    api.terminate();
    let status = api.exited(Duration::from_secs(30)).await;
    assert!(status.success(), "the API exits cleanly on SIGTERM: {status}");
    let accepted: HashSet<String> = burst.await.unwrap().into_iter().flatten().collect();
    assert!(accepted.len() < CREATES, "the signal came mid-burst");

    // Every validation written has its event on the queue; none is left behind.
    let stored: HashSet<String> = sqlx::query_scalar("SELECT id FROM phone_validations")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(accepted.is_subset(&stored), "every 200 is a stored validation");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the relay published everything before the broker closed");
    let amqp = testkit::amqp().await;
    let published: HashSet<String> = testkit::drain(&amqp, &topology.dispatch_queue())
        .await
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.delivery.data).unwrap()["validationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(published, stored, "one otp.requested per stored validation");
    testkit::delete_namespace(&topology, &[]).await;
}
