//! Webhook endpoints (docs/contract.md §13): create, read, list, change,
//! delete, rotate; URLs checked by the SSRF rules; event types checked;
//! tenants kept apart; secrets shown only on create and rotation, stored
//! sealed with the endpoint id; disabling fails the pending deliveries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::webhook_fixtures::{create, delivery, endpoint, status_of, URL};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::ObjectId;
use testkit::{Response, TestApp};

async fn patch(app: &TestApp, id: &str, body: Value) -> Response {
    let path = format!("/v2/webhook-endpoints/{id}");
    app.request(Method::PATCH, &path, Some(&app.token), Some(body)).await
}

#[tokio::test]
async fn an_endpoint_is_created_with_its_secret_which_no_read_shows_again() {
    let app = TestApp::spawn().await;
    let created = create(
        &app,
        json!({"url": URL, "description": "orders", "rateLimitPerSecond": 5, "eventTypes": ["phone_validation_failed", "phone_validation_sent", "phone_validation_sent"]}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let data = created.data();
    let id = data["_id"].as_str().unwrap();
    let secret = data["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 30, "{secret}");
    assert_eq!(data["url"], URL);
    assert_eq!(data["description"], "orders");
    assert_eq!(data["rateLimitPerSecond"], 5);
    assert_eq!(data["disabled"], false);
    assert_eq!(data["disabledReason"], Value::Null);
    assert_eq!(data["project"], Value::Null);
    // Catalogue order, once each.
    assert_eq!(
        data["eventTypes"],
        json!(["phone_validation_sent", "phone_validation_failed"])
    );
    assert_eq!(data["allEventTypes"], false);

    let read = app.get(&format!("/v2/webhook-endpoints/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.data().get("secret").is_none(), "{:?}", read.body);
    let listed = app.get("/v2/webhook-endpoints").await;
    assert_eq!(listed.body["pagination"]["total"], 1);
    assert!(listed.data()[0].get("secret").is_none());

    // Stored sealed, bound to the endpoint's id.
    let stored: String = sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    let keys = testkit::api::webhook_secret_keys();
    use secrecy::ExposeSecret;
    assert_eq!(keys.open(id, &stored).unwrap().expose_secret(), secret);
}

#[tokio::test]
async fn without_event_types_an_endpoint_gets_every_type_stored_as_null() {
    let app = TestApp::spawn().await;
    let id = endpoint(&app, json!({"url": URL})).await;
    let read = app.get(&format!("/v2/webhook-endpoints/{id}")).await;
    let names: Vec<&str> = shared::domain::WebhookEventType::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(read.data()["eventTypes"], json!(names));
    assert_eq!(read.data()["allEventTypes"], true);
    let stored: Option<Vec<String>> = sqlx::query_scalar("SELECT event_types FROM webhook_endpoints WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, None);
}

#[tokio::test]
async fn urls_the_ssrf_rules_refuse_are_invalid() {
    let app = TestApp::spawn().await;
    for url in [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/hook",
        "ftp://8.8.8.8/hook",
        "not a url",
        "http://localhost/hook",
        "https://no-such-host.invalid/hook",
    ] {
        let refused = create(&app, json!({"url": url})).await;
        assert_eq!(refused.message(), "400:invalid_url", "{url}: {:?}", refused.body);
    }
    let long = format!("https://8.8.8.8/{}", "a".repeat(2100));
    assert_eq!(create(&app, json!({"url": long})).await.message(), "400:invalid_url");
    let id = endpoint(&app, json!({"url": URL})).await;
    let refused = patch(&app, &id, json!({"url": "http://192.168.1.1/"})).await;
    assert_eq!(refused.message(), "400:invalid_url");
    assert_eq!(app.count("webhook_endpoints").await, 1);
}

#[tokio::test]
async fn bad_fields_are_refused_by_name() {
    let app = TestApp::spawn().await;
    for (body, message) in [
        (
            json!({"url": URL, "eventTypes": ["phone_validation_sent", "nope"]}),
            "400:invalid_eventTypes",
        ),
        (json!({"url": URL, "eventTypes": []}), "400:invalid_eventTypes"),
        (
            json!({"url": URL, "eventTypes": "phone_validation_sent"}),
            "400:invalid_eventTypes",
        ),
        (
            json!({"url": URL, "rateLimitPerSecond": 0}),
            "400:invalid_rateLimitPerSecond",
        ),
        (
            json!({"url": URL, "rateLimitPerSecond": -3}),
            "400:invalid_rateLimitPerSecond",
        ),
        (
            json!({"url": URL, "rateLimitPerSecond": 1.5}),
            "400:invalid_rateLimitPerSecond",
        ),
        (
            json!({"url": URL, "description": "d".repeat(501)}),
            "400:invalid_description",
        ),
        (json!({"url": URL, "disabled": "yes"}), "400:invalid_disabled"),
        (json!({"description": "no url"}), "409:missing url"),
    ] {
        assert_eq!(create(&app, body.clone()).await.message(), message, "{body}");
    }
    assert_eq!(app.count("webhook_endpoints").await, 0);
}

#[tokio::test]
async fn a_project_must_be_the_clients_own() {
    let app = TestApp::spawn().await;
    let (project, _) = app.project_and_flow(json!({})).await;
    let id = endpoint(&app, json!({"url": URL, "project": project})).await;
    let read = app.get(&format!("/v2/webhook-endpoints/{id}")).await;
    assert_eq!(read.data()["project"], project.as_str());

    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let foreign = app
        .request(
            Method::POST,
            "/v2/webhook-endpoints",
            Some(&token),
            Some(json!({"url": URL, "project": project})),
        )
        .await;
    assert_eq!(foreign.message(), "404:project_not_found");
    let unknown = create(&app, json!({"url": URL, "project": ObjectId::new()})).await;
    assert_eq!(unknown.message(), "404:project_not_found");
    let malformed = create(&app, json!({"url": URL, "project": "x"})).await;
    assert_eq!(malformed.message(), "404:project_not_found");
    // The endpoint exists: a project it cannot move to is a bad field.
    let changed = patch(&app, &id, json!({"project": ObjectId::new()})).await;
    assert_eq!(changed.message(), "400:invalid_project");
    let changed = patch(&app, &id, json!({"project": "x"})).await;
    assert_eq!(changed.message(), "400:invalid_project");
    let cleared = patch(&app, &id, json!({"project": null})).await;
    assert_eq!(cleared.data()["project"], Value::Null);
}

#[tokio::test]
async fn another_clients_endpoint_is_not_found() {
    let app = TestApp::spawn().await;
    let id = endpoint(&app, json!({"url": URL})).await;
    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let path = format!("/v2/webhook-endpoints/{id}");
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"disabled": true}))),
        (Method::DELETE, path.clone(), None),
        (Method::POST, format!("{path}/rotate-secret"), None),
        (
            Method::POST,
            format!("{path}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
    ] {
        let answer = app.request(method.clone(), &path, Some(&token), body).await;
        assert_eq!(answer.message(), "404:webhookEndpoint_not_found", "{method} {path}");
    }
    let listed = app
        .request(Method::GET, "/v2/webhook-endpoints", Some(&token), None)
        .await;
    assert_eq!(listed.body["pagination"]["total"], 0);
    let missing = app.get("/v2/webhook-endpoints/not-an-id").await;
    assert_eq!(missing.message(), "404:webhookEndpoint_not_found");
    // Untouched.
    let read = app.get(&path).await;
    assert_eq!(read.data()["disabled"], false);
}

#[tokio::test]
async fn a_patch_changes_only_what_it_names() {
    let app = TestApp::spawn().await;
    let id = endpoint(
        &app,
        json!({"url": URL, "description": "first", "rateLimitPerSecond": 3, "eventTypes": ["phone_validation_sent"]}),
    )
    .await;
    let changed = patch(&app, &id, json!({"description": "second"})).await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    let data = changed.data();
    assert_eq!(
        (&data["description"], &data["rateLimitPerSecond"], &data["eventTypes"]),
        (&json!("second"), &json!(3), &json!(["phone_validation_sent"]))
    );
    let changed = patch(
        &app,
        &id,
        json!({"url": "https://1.1.1.1/other", "eventTypes": null, "rateLimitPerSecond": null, "description": null}),
    )
    .await;
    let data = changed.data();
    assert_eq!(data["url"], "https://1.1.1.1/other");
    assert_eq!(data["allEventTypes"], true);
    assert_eq!(data["rateLimitPerSecond"], Value::Null);
    assert_eq!(data["description"], Value::Null);
    let refused = patch(&app, &id, json!({"eventTypes": ["unknown"]})).await;
    assert_eq!(refused.message(), "400:invalid_eventTypes");
}

#[tokio::test]
async fn disabling_fails_the_pending_deliveries_and_enabling_clears_the_reason() {
    let app = TestApp::spawn().await;
    let id = endpoint(&app, json!({"url": URL})).await;
    let other = endpoint(&app, json!({"url": URL})).await;
    let now = Utc::now();
    let pending = delivery(&app, &id, "pending", now).await;
    let delivered = delivery(&app, &id, "delivered", now).await;
    let elsewhere = delivery(&app, &other, "pending", now).await;
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = now(), paused_until = now() + interval '1 hour' WHERE id = $1",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();

    let disabled = patch(&app, &id, json!({"disabled": true})).await;
    assert_eq!(disabled.status, StatusCode::OK, "{:?}", disabled.body);
    assert_eq!(
        (&disabled.data()["disabled"], &disabled.data()["disabledReason"]),
        (&json!(true), &json!("manual"))
    );
    assert_eq!(status_of(&app, &pending, &id).await.0, "failed");
    assert_eq!(status_of(&app, &delivered, &id).await.0, "delivered");
    assert_eq!(status_of(&app, &elsewhere, &other).await.0, "pending");

    let enabled = patch(&app, &id, json!({"disabled": false})).await;
    assert_eq!(
        (&enabled.data()["disabled"], &enabled.data()["disabledReason"]),
        (&json!(false), &Value::Null)
    );
    let (failing, paused): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT failing_since, paused_until FROM webhook_endpoints WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((failing, paused), (None, None));
}

#[tokio::test]
async fn rotation_keeps_the_previous_secret_for_the_overlap() {
    let app = TestApp::spawn().await;
    let created = create(&app, json!({"url": URL})).await;
    let id = created.data()["_id"].as_str().unwrap().to_owned();
    let first = created.data()["secret"].as_str().unwrap().to_owned();
    let before: String = sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let rotated = app
        .post(&format!("/v2/webhook-endpoints/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let second = rotated.data()["secret"].as_str().unwrap().to_owned();
    assert!(second.starts_with("whsec_") && second != first);
    assert_eq!(rotated.data().as_object().unwrap().len(), 1, "only the secret");

    let (secret, previous, overlap): (String, Option<String>, Option<f64>) = sqlx::query_as(
        "SELECT secret, previous_secret,
                extract(epoch FROM previous_secret_expires_at - now())::float8
           FROM webhook_endpoints WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(previous.as_deref(), Some(before.as_str()));
    let keys = testkit::api::webhook_secret_keys();
    use secrecy::ExposeSecret;
    assert_eq!(keys.open(&id, &secret).unwrap().expose_secret(), second);
    let overlap = overlap.unwrap();
    assert!((86_000.0..=86_400.0).contains(&overlap), "{overlap}");
    let read = app.get(&format!("/v2/webhook-endpoints/{id}")).await;
    assert!(read.data().get("secret").is_none());
}

#[tokio::test]
async fn a_deleted_endpoint_is_gone_with_its_deliveries() {
    let app = TestApp::spawn().await;
    let id = endpoint(&app, json!({"url": URL})).await;
    delivery(&app, &id, "pending", Utc::now()).await;
    let path = format!("/v2/webhook-endpoints/{id}");
    let deleted = app.request(Method::DELETE, &path, Some(&app.token), None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    assert_eq!(deleted.data()["_id"], id.as_str());
    assert_eq!(app.get(&path).await.message(), "404:webhookEndpoint_not_found");
    assert_eq!(app.count("webhook_endpoint_deliveries").await, 0);
    let again = app.request(Method::DELETE, &path, Some(&app.token), None).await;
    assert_eq!(again.message(), "404:webhookEndpoint_not_found");
}

#[tokio::test]
async fn endpoints_are_listed_newest_first_a_page_at_a_time() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(endpoint(&app, json!({"url": URL})).await);
    }
    ids.sort();
    ids.reverse();
    let first = app.get("/v2/webhook-endpoints?limit=2").await;
    assert_eq!(
        first.body["pagination"],
        json!({"page": 1, "limit": 2, "total": 3, "pages": 2})
    );
    let second = app.get("/v2/webhook-endpoints?limit=2&page=2").await;
    let listed: Vec<&str> = first
        .data()
        .as_array()
        .unwrap()
        .iter()
        .chain(second.data().as_array().unwrap())
        .map(|e| e["_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(
        app.get("/v2/webhook-endpoints?limit=0").await.message(),
        "400:invalid_limit"
    );
}

fn otpctl(app: &TestApp, args: &[&str]) -> (bool, Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .output()
        .expect("run otpctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn otpctl_lists_a_clients_endpoints_without_secrets_and_enables_one() {
    let app = TestApp::spawn().await;
    let id = endpoint(&app, json!({"url": URL, "description": "one"})).await;
    sqlx::query(
        "UPDATE webhook_endpoints SET disabled = true, disabled_reason = 'failing', failing_since = now() WHERE id = $1",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();

    let client = app.client.to_string();
    let (ok, listed) = otpctl(&app, &["webhooks", "endpoints", "--client", &client]);
    assert!(ok, "{listed}");
    let endpoints = listed["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        (&endpoints[0]["_id"], &endpoints[0]["disabledReason"]),
        (&json!(id), &json!("failing"))
    );
    assert!(!listed.to_string().contains("whsec_") && !listed.to_string().contains("enc:v1"));

    let (ok, enabled) = otpctl(&app, &["webhooks", "enable", "--endpoint", &id]);
    assert!(ok, "{enabled}");
    assert_eq!(
        (&enabled["endpoint"]["disabled"], &enabled["endpoint"]["disabledReason"]),
        (&json!(false), &Value::Null)
    );
    let read = app.get(&format!("/v2/webhook-endpoints/{id}")).await;
    assert_eq!(read.data()["disabled"], false);
    let (ok, _) = otpctl(
        &app,
        &["webhooks", "enable", "--endpoint", &ObjectId::new().to_string()],
    );
    assert!(!ok, "an unknown endpoint fails");
}
