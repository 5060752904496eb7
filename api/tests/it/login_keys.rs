//! End users' login-token keys are shared by every API instance through
//! PostgreSQL: a token verifies with any instance's JWKS, survives a
//! restart, and `otpctl keys rotate` switches keys without an outage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use testkit::TestApp;

/// A second API instance on `app`'s database.
async fn beside(app: &TestApp) -> TestApp {
    let database = (app.database_url.clone(), app.pool.clone());
    TestApp::spawn_guarded(testkit::api::fraud_guard_config(), Some(database)).await
}

/// A login token for `number` from `app`.
async fn login_token(app: &TestApp, project: &str, flow: &str, number: &str) -> String {
    app.sent_validation(project, flow, number, "123456").await;
    let ok = app.validate(number, json!("123456")).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    ok.data()["token"].as_str().unwrap().to_owned()
}

async fn jwks(app: &TestApp) -> Value {
    let answer = app
        .request(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.body
}

fn kids(jwks: &Value) -> Vec<String> {
    let keys = jwks["keys"].as_array().unwrap();
    keys.iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
}

fn kid(token: &str) -> String {
    decode_header(token).unwrap().kid.unwrap()
}

/// Verifies `token` as a client would: the JWKS key its header names, the
/// client's audience, the issuer. `Err` names what failed.
fn verify(token: &str, jwks: &Value, client: &str) -> Result<Value, String> {
    let kid = kid(token);
    let keys = jwks["keys"].as_array().unwrap();
    let jwk = keys
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS {jwks}"))?;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut check = Validation::new(Algorithm::EdDSA);
    check.set_audience(&[client]);
    check.set_issuer(&[testkit::api::PUBLIC_BASE_URL]);
    decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &check)
        .map(|data| data.claims)
        .map_err(|error| error.to_string())
}

fn otpctl_rotate(database_url: &str) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(["keys", "rotate"])
        .env("DATABASE_URL", database_url)
        .env("WEBHOOK_SECRET_KEY", testkit::api::WEBHOOK_SECRET_KEY)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run otpctl");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn a_token_from_one_instance_verifies_with_another_instances_jwks() {
    let (one, project, flow) = TestApp::with_flow(json!({})).await;
    let two = beside(&one).await;
    let token = login_token(&one, &project, &flow, "62617737").await;
    let claims = verify(&token, &jwks(&two).await, &one.client.to_string()).unwrap();
    assert_eq!(claims["phone"], "+50762617737");
    assert_eq!(jwks(&one).await, jwks(&two).await);
    assert_eq!(one.count("login_token_keys").await, 1);
}

#[tokio::test]
async fn a_restart_keeps_login_tokens_valid() {
    let (first, project, flow) = TestApp::with_flow(json!({})).await;
    let token = login_token(&first, &project, &flow, "62617737").await;
    let client = first.client.to_string();
    let database = (first.database_url.clone(), first.pool.clone());
    drop(first);
    let restarted = TestApp::spawn_guarded(testkit::api::fraud_guard_config(), Some(database)).await;
    verify(&token, &jwks(&restarted).await, &client).unwrap();
    assert_eq!(kids(&jwks(&restarted).await), [kid(&token)]);
}

#[tokio::test]
async fn instances_starting_at_once_on_an_empty_table_agree_on_one_key() {
    // Eight starts, each on its own connection, released at the same moment.
    let (url, pool) = testkit::database().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut starts = Vec::new();
    for _ in 0..8 {
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        let barrier = barrier.clone();
        starts.push(tokio::spawn(async move {
            barrier.wait().await;
            api::login_token::store::ensure_key(&mut connection, &testkit::api::webhook_secret_keys()).await
        }));
    }
    for started in futures_util::future::join_all(starts).await {
        started.unwrap().unwrap();
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM login_token_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    let database = testkit::database().await;
    let (one, two) = tokio::join!(
        TestApp::spawn_guarded(testkit::api::fraud_guard_config(), Some(database.clone())),
        TestApp::spawn_guarded(testkit::api::fraud_guard_config(), Some(database.clone())),
    );
    let published = jwks(&one).await;
    assert_eq!(kids(&published).len(), 1, "{published}");
    assert_eq!(published, jwks(&two).await);
}

#[tokio::test]
async fn a_rotated_key_signs_new_tokens_and_the_old_one_is_published_until_its_tokens_expire() {
    let (one, project, flow) = TestApp::with_flow(json!({})).await;
    let two = beside(&one).await;
    let client = one.client.to_string();
    let old_token = login_token(&one, &project, &flow, "62617737").await;
    let old = kid(&old_token);

    let rotated = otpctl_rotate(&one.database_url);
    let new = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["previousKid"], old.as_str());
    let signs_from: DateTime<Utc> = serde_json::from_value(rotated["signsFrom"].clone()).unwrap();
    let until: DateTime<Utc> = serde_json::from_value(rotated["previousPublishedUntil"].clone()).unwrap();
    assert!((until - signs_from).num_seconds() > 3600, "{rotated}");

    // Every instance publishes the new key (before it signs) beside the old one.
    for app in [&one, &two] {
        testkit::eventually(Duration::from_secs(10), "the new key in the JWKS", || async {
            (kids(&jwks(app).await) == [old.clone(), new.clone()]).then_some(())
        })
        .await;
    }
    // Published ahead: until its time comes the old key still signs.
    assert!(Utc::now() < signs_from);
    assert_eq!(kid(&login_token(&one, &project, &flow, "62617738").await), old);

    for app in [&one, &two] {
        verify(&old_token, &jwks(app).await, &client).unwrap();
    }

    // An hour and a bit after its time came (the clock moved by moving the
    // switch back, rather than waited for): the old tokens have expired and
    // their key drops out of every JWKS; the new key signs.
    sqlx::query("UPDATE login_token_keys SET signs_from = now() - interval '3661 seconds' WHERE kid = $1")
        .bind(&new)
        .execute(&one.pool)
        .await
        .unwrap();
    for app in [&one, &two] {
        testkit::eventually(Duration::from_secs(10), "the old key to drop out", || async {
            (kids(&jwks(app).await) == [new.clone()]).then_some(())
        })
        .await;
    }
    let new_token = login_token(&one, &project, &flow, "62617739").await;
    assert_eq!(kid(&new_token), new);
    verify(&new_token, &jwks(&two).await, &client).unwrap();
    // The next rotation deletes the key nobody publishes any more.
    assert_eq!(otpctl_rotate(&one.database_url)["deleted"], 1);
}

#[test]
fn the_api_without_login_token_key_needs_webhook_secret_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JWT_SECRET", testkit::api::JWT_SECRET)
        .env("OTP_PEPPER", testkit::api::PEPPER)
        .env("API_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the API");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("WEBHOOK_SECRET_KEY"), "{stderr}");
}
