//! The message log of webhook endpoints (docs/contract.md §13): events
//! newest first with their deliveries, filtered and paged; one event and
//! its attempts; resend and recover putting deliveries back to pending; the
//! event types' catalogue and the OpenAPI document's `webhooks`. Rows the
//! webhook worker would write are arranged with SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::webhook_fixtures::{attempt, deliver, delivery, endpoint, message, status_of, URL};
use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::ObjectId;
use testkit::TestApp;

fn event_ids(answer: &Value) -> Vec<&str> {
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["eventId"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_log_lists_events_newest_first_with_their_deliveries_and_filters() {
    let app = TestApp::spawn().await;
    let a = endpoint(&app, json!({"url": URL})).await;
    let b = endpoint(&app, json!({"url": URL})).await;
    let now = Utc::now();
    let old = delivery(&app, &a, "delivered", now - Duration::hours(3)).await;
    let middle = delivery(&app, &a, "failed", now - Duration::hours(2)).await;
    let new = delivery(&app, &b, "pending", now - Duration::hours(1)).await;
    // `middle` went to b as well, delivered there.
    deliver(&app, &middle, &b, "delivered", 1, Some(204)).await;
    sqlx::query("UPDATE webhook_messages SET event_type = 'fraud_guard_blocked' WHERE event_id = $1")
        .bind(&new)
        .execute(&app.pool)
        .await
        .unwrap();

    let all = app.get("/v2/webhook-messages").await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    assert_eq!(event_ids(&all.body), [new.as_str(), &middle, &old]);
    assert_eq!(all.body["pagination"]["total"], 3);
    let first = &all.data()[1];
    assert_eq!(first["type"], "phone_validation_validated");
    assert_eq!(first["payload"], json!({"type": "phone_validation_validated"}));
    let deliveries = first["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    let mut expected = [a.clone(), b.clone()];
    expected.sort();
    assert_eq!(deliveries[0]["endpoint"], expected[0].as_str());
    let to_b = deliveries.iter().find(|d| d["endpoint"] == b.as_str()).unwrap();
    assert_eq!(
        (&to_b["status"], &to_b["attempts"], &to_b["lastStatusCode"]),
        (&json!("delivered"), &json!(1), &json!(204))
    );

    for (query, expected) in [
        ("status=failed".to_owned(), vec![&middle]),
        (format!("endpoint={b}"), vec![&new, &middle]),
        (format!("endpoint={a}&status=delivered"), vec![&old]),
        (format!("endpoint={b}&status=failed"), vec![]),
        ("eventType=fraud_guard_blocked".to_owned(), vec![&new]),
        (
            "eventType=phone_validation_validated&status=delivered".to_owned(),
            vec![&middle, &old],
        ),
        (
            format!(
                "since={}",
                (now - Duration::minutes(150)).to_rfc3339().replace('+', "%2B")
            ),
            vec![&new, &middle],
        ),
        (
            format!(
                "until={}",
                (now - Duration::minutes(150)).format("%Y-%m-%dT%H:%M:%S%.fZ")
            ),
            vec![&old],
        ),
        (format!("endpoint={}", ObjectId::new()), vec![]),
    ] {
        let answer = app.get(&format!("/v2/webhook-messages?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
        let expected: Vec<&str> = expected.into_iter().map(String::as_str).collect();
        assert_eq!(event_ids(&answer.body), expected, "{query}");
    }

    let paged = app.get("/v2/webhook-messages?limit=2&page=2").await;
    assert_eq!(event_ids(&paged.body), [old.as_str()]);
    assert_eq!(
        paged.body["pagination"],
        json!({"page": 2, "limit": 2, "total": 3, "pages": 2})
    );

    for (query, message) in [
        ("status=lost", "400:invalid_status"),
        ("eventType=nope", "400:invalid_eventType"),
        ("endpoint=x", "400:invalid_endpoint"),
        ("since=yesterday", "400:invalid_since"),
        ("until=2020-13-01T00:00:00Z", "400:invalid_until"),
    ] {
        let answer = app.get(&format!("/v2/webhook-messages?{query}")).await;
        assert_eq!(answer.message(), message, "{query}");
    }

    // Another client's log is empty, and its events are not found.
    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let theirs = app
        .request(Method::GET, "/v2/webhook-messages", Some(&token), None)
        .await;
    assert_eq!(theirs.body["pagination"]["total"], 0);
    let path = format!("/v2/webhook-messages/{old}");
    let theirs = app.request(Method::GET, &path, Some(&token), None).await;
    assert_eq!(theirs.message(), "404:webhookMessage_not_found");
}

/// A validation's messages: the events whose body's `object` is it
/// (0024's index), the client's only.
#[tokio::test]
async fn the_log_of_one_validation_is_its_events_and_only_its_clients() {
    let app = TestApp::spawn().await;
    let a = endpoint(&app, json!({"url": URL})).await;
    let (mine, another) = (ObjectId::new().to_string(), ObjectId::new().to_string());
    let now = Utc::now();
    let about = |kind: &str, validation: &str| json!({"type": kind, "object": {"_id": validation, "status": "sent"}});
    let kinds = [
        "phone_validation_sent",
        "phone_validation_delivered",
        "phone_validation_sent",
    ];
    let mut events = Vec::new();
    for (hours, (kind, validation)) in (1..).zip(kinds.into_iter().zip([&mine, &mine, &another])) {
        let event = message(&app, kind, now - Duration::hours(hours), about(kind, validation)).await;
        deliver(&app, &event, &a, "delivered", 1, Some(200)).await;
        events.push(event);
    }
    let block = json!({"type": "fraud_guard_blocked", "object": {"prefix": "+507626"}});
    message(&app, "fraud_guard_blocked", now, block).await;

    let listed = app.get(&format!("/v2/webhook-messages?validation={mine}")).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(event_ids(&listed.body), [events[0].as_str(), &events[1]]);
    assert_eq!(listed.body["pagination"]["total"], 2);
    assert_eq!(listed.data()[0]["payload"]["object"]["_id"], mine.as_str());
    assert_eq!(listed.data()[1]["deliveries"][0]["lastStatusCode"], 200);
    for (query, expected) in [
        (
            format!("validation={mine}&eventType=phone_validation_delivered"),
            vec![&events[1]],
        ),
        (format!("validation={another}&status=delivered"), vec![&events[2]]),
        (format!("validation={mine}&limit=1&page=2"), vec![&events[1]]),
        (format!("validation={}", ObjectId::new()), vec![]),
    ] {
        let answer = app.get(&format!("/v2/webhook-messages?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
        let expected: Vec<&str> = expected.into_iter().map(String::as_str).collect();
        assert_eq!(event_ids(&answer.body), expected, "{query}");
    }
    for bad in ["x", "ABCDEF0123456789ABCDEF01", &format!("{mine}0")] {
        let answer = app.get(&format!("/v2/webhook-messages?validation={bad}")).await;
        assert_eq!(answer.message(), "400:invalid_validation", "{bad}");
    }

    // Another client asking for this client's validation gets nothing.
    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let path = format!("/v2/webhook-messages?validation={mine}");
    let theirs = app.request(Method::GET, &path, Some(&token), None).await;
    assert_eq!(theirs.status, StatusCode::OK, "{:?}", theirs.body);
    assert_eq!(theirs.body["pagination"]["total"], 0);
}

#[tokio::test]
async fn one_event_and_its_attempts_are_read_with_the_response_bodies() {
    let app = TestApp::spawn().await;
    let a = endpoint(&app, json!({"url": URL})).await;
    let event = delivery(&app, &a, "pending", Utc::now()).await;
    for (status, body, error) in [
        (Some(500), Some("oops"), None),
        (None, None, Some("timed out")),
        (Some(200), Some("ok"), None),
    ] {
        attempt(&app, &event, &a, status, error, body).await;
    }
    let read = app.get(&format!("/v2/webhook-messages/{event}")).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.data()["eventId"], event.as_str());
    assert_eq!(read.data()["deliveries"][0]["status"], "pending");

    let attempts = app.get(&format!("/v2/webhook-messages/{event}/attempts")).await;
    assert_eq!(attempts.status, StatusCode::OK, "{:?}", attempts.body);
    assert_eq!(attempts.body["pagination"]["total"], 3);
    let listed = attempts.data().as_array().unwrap();
    assert_eq!(
        (&listed[0]["statusCode"], &listed[0]["responseBody"], &listed[0]["url"]),
        (&json!(200), &json!("ok"), &json!(URL))
    );
    assert_eq!(
        (&listed[1]["statusCode"], &listed[1]["error"]),
        (&Value::Null, &json!("timed out"))
    );
    assert_eq!(listed[2]["responseBody"], "oops");
    assert_eq!(listed[2]["endpoint"], a.as_str());
    assert_eq!(listed[2]["latencyMs"], 12);

    let unknown = ObjectId::new();
    for path in [
        format!("/v2/webhook-messages/{unknown}"),
        format!("/v2/webhook-messages/{unknown}/attempts"),
        "/v2/webhook-messages/zzz".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.message(), "404:webhookMessage_not_found", "{path}");
    }
}

#[tokio::test]
async fn a_resend_puts_the_deliveries_back_to_pending_now() {
    let app = TestApp::spawn().await;
    let a = endpoint(&app, json!({"url": URL})).await;
    let b = endpoint(&app, json!({"url": URL})).await;
    let c = endpoint(&app, json!({"url": URL})).await;
    let event = delivery(&app, &a, "failed", Utc::now()).await;
    sqlx::query(
        "INSERT INTO webhook_endpoint_deliveries (event_id, endpoint_id, client_id, status, attempts)
         VALUES ($1, $2, $3, 'delivered', 1)",
    )
    .bind(&event)
    .bind(&b)
    .bind(&app.client)
    .execute(&app.pool)
    .await
    .unwrap();
    let path = format!("/v2/webhook-messages/{event}/resend");

    let all = app.post(&path, json!({})).await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    assert_eq!(all.data(), &json!({"queued": 2}));
    assert_eq!(status_of(&app, &event, &a).await, ("pending".into(), 0));
    assert_eq!(status_of(&app, &event, &b).await, ("pending".into(), 0));
    let due: bool = sqlx::query_scalar(
        "SELECT bool_and(next_attempt_at <= now()) FROM webhook_endpoint_deliveries WHERE event_id = $1",
    )
    .bind(&event)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(due);

    // An endpoint of the client's that had no delivery gets one.
    let one = app.post(&path, json!({"endpoint": c})).await;
    assert_eq!(one.data(), &json!({"queued": 1}));
    assert_eq!(status_of(&app, &event, &c).await, ("pending".into(), 0));

    let disabled = endpoint(&app, json!({"url": URL, "disabled": true})).await;
    let refused = app.post(&path, json!({"endpoint": disabled})).await;
    assert_eq!(refused.message(), "409:webhookEndpoint_disabled");
    let unknown = app.post(&path, json!({"endpoint": ObjectId::new()})).await;
    assert_eq!(unknown.message(), "404:webhookEndpoint_not_found");
    let missing = app
        .post(&format!("/v2/webhook-messages/{}/resend", ObjectId::new()), json!({}))
        .await;
    assert_eq!(missing.message(), "404:webhookMessage_not_found");
    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let theirs = app.request(Method::POST, &path, Some(&token), Some(json!({}))).await;
    assert_eq!(theirs.message(), "404:webhookMessage_not_found");
}

#[tokio::test]
async fn recovery_sends_again_what_failed_in_the_range() {
    let app = TestApp::spawn().await;
    let a = endpoint(&app, json!({"url": URL})).await;
    let b = endpoint(&app, json!({"url": URL})).await;
    let now = Utc::now();
    let before = delivery(&app, &a, "failed", now - Duration::hours(5)).await;
    let inside = delivery(&app, &a, "failed", now - Duration::hours(2)).await;
    let delivered = delivery(&app, &a, "delivered", now - Duration::hours(2)).await;
    let after = delivery(&app, &a, "failed", now - Duration::minutes(10)).await;
    let elsewhere = delivery(&app, &b, "failed", now - Duration::hours(2)).await;
    let path = format!("/v2/webhook-endpoints/{a}/recover");
    let since = (now - Duration::hours(3)).to_rfc3339();
    let until = (now - Duration::hours(1)).to_rfc3339();

    let recovered = app.post(&path, json!({"since": since, "until": until})).await;
    assert_eq!(recovered.status, StatusCode::OK, "{:?}", recovered.body);
    assert_eq!(recovered.data(), &json!({"queued": 1}));
    assert_eq!(status_of(&app, &inside, &a).await, ("pending".into(), 0));
    assert_eq!(status_of(&app, &before, &a).await.0, "failed");
    assert_eq!(status_of(&app, &after, &a).await.0, "failed");
    assert_eq!(status_of(&app, &delivered, &a).await.0, "delivered");
    assert_eq!(status_of(&app, &elsewhere, &b).await.0, "failed");

    // Without `until`: up to now.
    let rest = app.post(&path, json!({"since": since})).await;
    assert_eq!(rest.data(), &json!({"queued": 1}));
    assert_eq!(status_of(&app, &after, &a).await.0, "pending");

    for (body, message) in [
        (json!({}), "409:missing since"),
        (json!({"since": "yesterday"}), "400:invalid_since"),
        (json!({"since": since, "until": "soon"}), "400:invalid_until"),
        (json!({"since": until, "until": since}), "400:invalid_until"),
        (json!({"since": 5}), "400:invalid_since"),
    ] {
        assert_eq!(app.post(&path, body.clone()).await.message(), message, "{body}");
    }
    let disabled = endpoint(&app, json!({"url": URL, "disabled": true})).await;
    let refused = app
        .post(
            &format!("/v2/webhook-endpoints/{disabled}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(refused.message(), "409:webhookEndpoint_disabled");
}

#[tokio::test]
async fn the_event_types_catalogue_lists_every_type_with_its_schema() {
    let app = TestApp::spawn().await;
    let answer = app.get("/v2/webhook-event-types").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let types = answer.data().as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let expected: Vec<&str> = shared::domain::WebhookEventType::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, expected);
    for kind in types {
        assert!(kind["description"].as_str().is_some_and(|d| !d.is_empty()));
        let schema = &kind["schema"];
        assert_eq!(schema["properties"]["type"]["const"], kind["name"]);
        assert_eq!(schema["required"], json!(["type", "object", "eventId", "occurredAt"]));
    }
    let validated = &types[3]["schema"];
    assert_eq!(validated["properties"]["object"]["$ref"], "#/$defs/PhoneValidation");
    assert!(validated["$defs"]["PhoneValidation"]["properties"]["_id"].is_object());
    let blocked = &types[5]["schema"]["properties"]["object"];
    assert_eq!(blocked["required"], json!(["prefix", "until", "sent", "validated"]));
    let anonymous = app.request(Method::GET, "/v2/webhook-event-types", None, None).await;
    assert_eq!(anonymous.message(), "401:invalid_token");
}

#[tokio::test]
async fn the_openapi_document_has_the_new_paths_and_a_webhooks_section() {
    let app = TestApp::spawn().await;
    let doc = app.request(Method::GET, "/openapi.json", None, None).await.body;
    for (path, method) in [
        ("/v2/webhook-endpoints", "post"),
        ("/v2/webhook-endpoints", "get"),
        ("/v2/webhook-endpoints/{id}", "get"),
        ("/v2/webhook-endpoints/{id}", "patch"),
        ("/v2/webhook-endpoints/{id}", "delete"),
        ("/v2/webhook-endpoints/{id}/rotate-secret", "post"),
        ("/v2/webhook-endpoints/{id}/recover", "post"),
        ("/v2/webhook-messages", "get"),
        ("/v2/webhook-messages/{eventId}", "get"),
        ("/v2/webhook-messages/{eventId}/attempts", "get"),
        ("/v2/webhook-messages/{eventId}/resend", "post"),
        ("/v2/webhook-event-types", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let create = &doc["paths"]["/v2/webhook-endpoints"]["post"]["responses"];
    assert!(create["201"].is_object() && create.get("200").is_none(), "created: 201");
    let patch = &doc["paths"]["/v2/webhook-endpoints/{id}"]["patch"]["responses"];
    for status in ["200", "400", "404", "413"] {
        assert!(patch[status].is_object(), "PATCH {status}");
    }
    let webhooks = doc["webhooks"].as_object().unwrap();
    assert_eq!(webhooks.len(), shared::domain::WebhookEventType::ALL.len());
    let validated =
        &webhooks["phone_validation_validated"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        validated["properties"]["object"]["$ref"],
        "#/components/schemas/PhoneValidation"
    );
    assert!(doc["components"]["schemas"]["PhoneValidation"].is_object());
    assert_eq!(
        webhooks["fraud_guard_blocked"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
            ["type"]["const"],
        "fraud_guard_blocked"
    );
}
