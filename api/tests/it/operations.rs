//! Health, readiness, metrics, the OpenAPI document and the operator CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::process::Command;
use testkit::TestApp;

#[tokio::test]
async fn health_ready_and_metrics_answer_without_a_token() {
    let app = TestApp::spawn().await;
    app.wait_for_broker().await;
    let health = app.request(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.ready().await;
    assert_eq!(ready.body, json!({"database": true, "broker": true}));
    let (project, flow) = app.project_and_flow(json!({})).await;
    app.create_validation(&project, &flow, "62617737").await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("phone_validations_created_total"), "{metrics}");
    assert!(metrics.contains("otp_ready{process=\"api\"} 1"), "{metrics}");
    testkit::eventually(
        std::time::Duration::from_secs(10),
        "outbox_pending in /metrics",
        || async { app.metrics().await.contains("outbox_pending").then_some(()) },
    )
    .await;
}

/// The process's internals (`/metrics`) and readiness are served on
/// `OPS_ADDR` only; `/health` on both ports (load balancers probe the port
/// they send traffic to); the API's routes on `API_ADDR` only.
#[tokio::test]
async fn metrics_and_readiness_are_on_the_ops_port_only_and_health_on_both() {
    let app = TestApp::spawn().await;
    app.wait_for_broker().await;
    let status = |url: String| {
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    for path in ["/metrics", "/ready"] {
        assert_eq!(
            status(format!("{}{path}", app.base)).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(status(format!("{}{path}", app.ops)).await, StatusCode::OK, "{path}");
    }
    for base in [&app.base, &app.ops] {
        assert_eq!(status(format!("{base}/health")).await, StatusCode::OK, "{base}");
    }
    assert_eq!(status(format!("{}/openapi.json", app.ops)).await, StatusCode::NOT_FOUND);
    assert!(app.metrics().await.contains("otp_ready{process=\"api\"} 1"));
}

#[tokio::test]
async fn the_openapi_document_lists_every_v2_route_as_openapi_3_1() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let expected = [
        ("/v2/projects", vec!["get", "post"]),
        ("/v2/projects/{id}", vec!["get"]),
        ("/v2/project-flows", vec!["get", "post"]),
        ("/v2/project-flows/{id}", vec!["get", "put"]),
        ("/v2/project-flows/{id}/preview", vec!["post"]),
        ("/v2/phone-validations", vec!["get", "post"]),
        ("/v2/phone-validations/validate", vec!["post"]),
        ("/v2/phone-validations/{id}", vec!["get"]),
        ("/v2/phone-validations/{id}/next-channel", vec!["post"]),
        ("/v2/phone-validations/stats", vec!["get"]),
        ("/v2/webhook-deliveries", vec!["get"]),
        ("/v2/fraud-guard/blocks", vec!["get"]),
        ("/v2/fraud-guard/blocks/{prefix}", vec!["delete"]),
        ("/v2/safe-list", vec!["get", "post"]),
        ("/v2/safe-list/{id}", vec!["delete"]),
        ("/v2/webhook-endpoints", vec!["get", "post"]),
        ("/v2/webhook-endpoints/{id}", vec!["get", "patch", "delete"]),
        ("/v2/webhook-endpoints/{id}/rotate-secret", vec!["post"]),
        ("/v2/webhook-endpoints/{id}/recover", vec!["post"]),
        ("/v2/webhook-messages", vec!["get"]),
        ("/v2/webhook-messages/{eventId}", vec!["get"]),
        ("/v2/webhook-messages/{eventId}/attempts", vec!["get"]),
        ("/v2/webhook-messages/{eventId}/resend", vec!["post"]),
        ("/v2/webhook-event-types", vec!["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), expected.len(), "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, methods) in expected {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
    }
    assert!(doc["components"]["schemas"]["PhoneValidation"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

fn otpctl(app: &TestApp, args: &[&str]) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_SECRET", testkit::api::JWT_SECRET)
        .env("WEBHOOK_SECRET_KEY", testkit::api::WEBHOOK_SECRET_KEY)
        .output()
        .expect("run otpctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[tokio::test]
async fn otpctl_migrates_creates_clients_and_issues_tokens_the_api_accepts() {
    let app = TestApp::spawn().await;
    let (ok, migrated, _) = otpctl(&app, &["migrate"]);
    assert!(ok);
    assert_eq!(migrated["migrated"], true);

    let (ok, client, stderr) = otpctl(&app, &["client", "create", "--name", "Globex"]);
    assert!(ok, "{stderr}");
    let id = client["_id"].as_str().unwrap().to_owned();
    assert_eq!(client["name"], "Globex");
    assert!(client["webhookSecret"].as_str().unwrap().starts_with("whsec_"));
    let token = client["token"].as_str().unwrap();
    let projects = app
        .request(reqwest::Method::GET, "/v2/projects", Some(token), None)
        .await;
    assert_eq!(projects.status, StatusCode::OK);

    let (ok, issued, _) = otpctl(&app, &["token", "create", "--client", &id, "--expires-in-days", "2"]);
    assert!(ok);
    let created = app
        .request(
            reqwest::Method::POST,
            "/v2/projects",
            Some(issued["token"].as_str().unwrap()),
            Some(json!({"name": "P"})),
        )
        .await;
    assert_eq!(created.data()["client"], id.as_str());

    // Stored sealed: the column never holds the secret otpctl printed.
    let plain = client["webhookSecret"].as_str().unwrap();
    let stored: String = sqlx::query_scalar("SELECT webhook_secret FROM clients WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    assert!(!stored.contains(plain.trim_start_matches("whsec_")), "{stored}");
    let sealing = testkit::api::webhook_secret_keys();
    assert_eq!(sealing.open(&id, &stored).unwrap().expose_secret(), plain);

    let (ok, rotated, _) = otpctl(&app, &["client", "rotate-secret", "--client", &id]);
    assert!(ok);
    assert_ne!(rotated["webhookSecret"], client["webhookSecret"]);
    let (current, previous): (String, Option<String>) =
        sqlx::query_as("SELECT webhook_secret, previous_webhook_secret FROM clients WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let rotated_plain = rotated["webhookSecret"].as_str().unwrap();
    assert!(
        !current.contains(rotated_plain.trim_start_matches("whsec_")),
        "{current}"
    );
    assert_eq!(sealing.open(&id, &current).unwrap().expose_secret(), rotated_plain);
    assert_eq!(sealing.open(&id, &previous.unwrap()).unwrap().expose_secret(), plain);

    let (ok, _, stderr) = otpctl(&app, &["token", "create", "--client", "ffffffffffffffffffffffff"]);
    assert!(!ok);
    assert!(stderr.contains("no client"), "{stderr}");
}

/// Runs `otpctl` against the test's RabbitMQ namespace.
fn otpctl_amqp(app: &TestApp, args: &[&str]) -> (bool, Value, String) {
    let prefix = app.topology.webhook_queue().trim_end_matches("otp.webhooks").to_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(args)
        .env("AMQP_URL", testkit::amqp_url())
        .env("AMQP_PREFIX", prefix)
        .output()
        .expect("run otpctl");
    (
        output.status.success(),
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[tokio::test]
async fn otpctl_lists_and_replays_dead_letters_with_a_fresh_schedule() {
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let app = TestApp::spawn().await;
    app.wait_for_broker().await;
    for (queue, work_queue) in [
        ("webhooks", app.topology.webhook_queue()),
        ("dispatch", app.topology.dispatch_queue()),
    ] {
        let dlq = shared::amqp::Topology::dead_letter_queue(&work_queue);
        let mut headers = FieldTable::default();
        headers.insert("x-attempt".into(), AMQPValue::LongLongInt(9));
        headers.insert("x-round".into(), AMQPValue::LongLongInt(0));
        headers.insert(
            "x-dead-letter-reason".into(),
            AMQPValue::LongString(LongString::from("attempts_exhausted")),
        );
        let channel = app.amqp.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        channel
            .basic_publish(
                "".into(),
                dlq.as_str().into(),
                Default::default(),
                br#"{"eventId":"e1"}"#,
                lapin::BasicProperties::default()
                    .with_message_id("e1".into())
                    .with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();

        let (ok, listed, stderr) = otpctl_amqp(&app, &["dlq", "list", "--queue", queue]);
        assert!(ok, "{stderr}");
        assert_eq!(listed["count"], 1);
        assert_eq!(listed["messages"][0]["messageId"], "e1");
        assert_eq!(
            listed["messages"][0]["headers"]["x-dead-letter-reason"],
            "attempts_exhausted"
        );
        assert_eq!(listed["messages"][0]["body"]["eventId"], "e1");

        let (ok, replayed, stderr) = otpctl_amqp(&app, &["dlq", "replay", "--queue", queue]);
        assert!(ok, "{stderr}");
        assert_eq!(replayed["replayed"], 1);
        let moved = testkit::drain(&app.amqp, &work_queue).await;
        assert_eq!(moved.len(), 1, "{queue}: the message is back on {work_queue}");
        let headers = moved[0].delivery.properties.headers().clone().unwrap_or_default();
        let headers = headers.inner();
        assert!(!headers.contains_key("x-attempt"), "the attempt count is reset");
        assert!(!headers.contains_key("x-dead-letter-reason"));
        assert_eq!(headers.get("x-round"), Some(&AMQPValue::LongLongInt(1)));
        assert!(testkit::drain(&app.amqp, &dlq).await.is_empty());
    }
}
