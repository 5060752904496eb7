//! A plaintext webhook secret is refused: whoever can write to the database
//! could set a value of their own and forge the webhooks a tenant accepts.
//! Only in the upgrade window (`WEBHOOK_ACCEPT_PLAINTEXT_SECRETS`) does one
//! open, and get sealed at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::process::Service;
use std::time::Duration;
use testkit::webhooks::{Options, Receiver, TestEnv};

/// A value someone with database access chose ("forged", base64).
const PLANTED: &str = "whsec_Zm9yZ2Vk";

async fn plant(env: &TestEnv) {
    sqlx::query("UPDATE clients SET webhook_secret = $2 WHERE id = $1")
        .bind(&env.app.client)
        .bind(PLANTED)
        .execute(&env.app.pool)
        .await
        .unwrap();
}

async fn stored(env: &TestEnv) -> String {
    sqlx::query_scalar("SELECT webhook_secret FROM clients WHERE id = $1")
        .bind(&env.app.client)
        .fetch_one(&env.app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_plaintext_secret_planted_after_start_up_signs_nothing() {
    let env = TestEnv::spawn(Options::default()).await;
    plant(&env).await;
    let receiver = Receiver::answering(200).await;
    let (project, flow) = env.flow_with_webhook(&receiver.url(), json!({})).await;
    env.validated(&project, &flow, "62617737").await;

    testkit::eventually(Duration::from_secs(45), "the event to be dead-lettered", || async {
        (env.ready_count(&env.dead_letter_queue()).await >= 1).then_some(())
    })
    .await;
    assert!(
        receiver.received().is_empty(),
        "nothing signed with the planted secret was sent"
    );
}

#[tokio::test]
async fn a_plaintext_secret_is_sealed_at_start_only_in_the_upgrade_window() {
    let env = TestEnv::spawn(Options::default()).await;
    plant(&env).await;
    let start = |accept_plaintext: bool| {
        let mut config = TestEnv::worker_config(&env.app, &Options::default());
        config.secret_keys = config.secret_keys.accepting_plaintext(accept_plaintext);
        let stop = tokio_util::sync::CancellationToken::new();
        let topology = env.app.topology.clone();
        async move {
            let worker = webhook_worker::WebhookWorker::build(config, topology, stop.clone())
                .await
                .unwrap();
            stop.cancel();
            worker.run().await.unwrap();
        }
    };

    // A restart must not launder the planted value into a sealed one.
    start(false).await;
    assert_eq!(stored(&env).await, PLANTED);

    start(true).await;
    let sealed = stored(&env).await;
    assert!(sealed.starts_with("enc:v1:"), "{sealed}");
    let opened = testkit::api::webhook_secret_keys()
        .open(&env.app.client.to_string(), &sealed)
        .unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), PLANTED);
}
