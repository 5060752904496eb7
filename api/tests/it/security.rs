//! Keys and tokens: the processes refuse weak keys, end users' login tokens
//! verify with the published JWKS (and only for their client), and client
//! tokens can be revoked. Database errors reach the logs without the values
//! they quote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use testkit::TestApp;

/// Runs a binary with only `env` (plus PATH), expecting it to stop at once.
fn start_and_fail(binary: &str, env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        // An empty directory: no .env to pick up.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the binary");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const GOOD_PEPPER: &str = testkit::api::PEPPER;
const GOOD_JWT: &str = testkit::api::JWT_SECRET;

#[test]
fn the_api_refuses_to_start_with_a_short_or_placeholder_key() {
    let api = env!("CARGO_BIN_EXE_api");
    for (name, bad, other, other_value) in [
        ("JWT_SECRET", "change-me", "OTP_PEPPER", GOOD_PEPPER),
        ("JWT_SECRET", "dev-jwt-secret-change-me", "OTP_PEPPER", GOOD_PEPPER),
        (
            "JWT_SECRET",
            "change-me-to-a-long-random-string",
            "OTP_PEPPER",
            GOOD_PEPPER,
        ),
        ("OTP_PEPPER", "short-pepper", "JWT_SECRET", GOOD_JWT),
        (
            "OTP_PEPPER",
            "change-me-to-another-long-random-string",
            "JWT_SECRET",
            GOOD_JWT,
        ),
    ] {
        let (ok, stderr) = start_and_fail(
            api,
            &[
                (name, bad),
                (other, other_value),
                ("API_ADDR", "127.0.0.1:0"),
                ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            ],
        );
        assert!(!ok, "{name}={bad} must not start");
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(!stderr.contains(bad), "the message quotes the value: {stderr}");
    }
}

#[test]
fn otpctl_refuses_a_short_jwt_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(["token", "create", "--client", "ffffffffffffffffffffffff"])
        .env_clear()
        .env("JWT_SECRET", "secret")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run otpctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("JWT_SECRET") && stderr.contains("32 bytes"), "{stderr}");
}

#[test]
fn otpctl_generates_login_token_keys() {
    let output = Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(["keys", "generate"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let key: Value = serde_json::from_slice(&output.stdout).unwrap();
    let pem = key["privateKeyPem"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let parsed = api::login_token::LoginKey::from_pem(&secrecy::SecretString::from(pem.to_owned())).unwrap();
    assert_eq!(key["kid"], parsed.kid());
    let one_line = key["privateKey"].as_str().unwrap().to_owned();
    let same = api::login_token::LoginKey::from_pem(&secrecy::SecretString::from(one_line)).unwrap();
    assert_eq!(same.kid(), parsed.kid());
    assert_eq!(key["publicJwk"], parsed.public_jwk());
}

#[tokio::test]
async fn a_login_token_verifies_with_the_jwks_for_its_client_only() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    app.sent_validation(&project, &flow, "62617737", "123456").await;
    let ok = app.validate("62617737", json!("123456")).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let token = ok.data()["token"].as_str().unwrap();

    let jwks = app
        .request(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.status, StatusCode::OK);
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{:?}", jwks.body);
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), keys[0]["kid"].as_str());

    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut check = Validation::new(Algorithm::EdDSA);
    check.set_audience(&[app.client.to_string()]);
    check.set_issuer(&[testkit::api::PUBLIC_BASE_URL]);
    check.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let claims = decode::<Value>(token, &key, &check).unwrap().claims;
    assert_eq!(claims["phone"], "+50762617737");
    assert_eq!(claims["aud"], app.client.to_string());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);

    check.set_audience(&[shared::ObjectId::new().to_string()]);
    assert!(
        decode::<Value>(token, &key, &check).is_err(),
        "another client's audience"
    );
    // And it was not signed with JWT_SECRET.
    let mut hs = Validation::new(Algorithm::HS256);
    hs.validate_aud = false;
    let secret = DecodingKey::from_secret(testkit::api::JWT_SECRET.as_bytes());
    assert!(decode::<Value>(token, &secret, &hs).is_err());
}

fn otpctl(app: &TestApp, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_otpctl"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_SECRET", testkit::api::JWT_SECRET)
        .output()
        .expect("run otpctl");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn a_revoked_client_token_is_refused_and_a_new_one_works() {
    let app = TestApp::spawn().await;
    let client = app.client.to_string();
    let projects = |token: String| {
        let app = &app;
        async move {
            app.request(reqwest::Method::GET, "/v2/projects", Some(&token), None)
                .await
        }
    };
    assert_eq!(projects(app.token.clone()).await.status, StatusCode::OK);

    let revoked = otpctl(&app, &["token", "revoke", "--client", &client]);
    assert_eq!(revoked["tokenVersion"], 1);
    // The API trusts a version it read for two seconds at most.
    let refused = testkit::eventually(Duration::from_secs(10), "the old token to be refused", || async {
        let answer = projects(app.token.clone()).await;
        (answer.status == StatusCode::UNAUTHORIZED).then_some(answer)
    })
    .await;
    assert_eq!(
        refused.body,
        json!({"code": "Unauthorized", "message": "401:invalid_token"})
    );

    let issued = otpctl(&app, &["token", "create", "--client", &client]);
    let fresh = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(projects(fresh).await.status, StatusCode::OK);
    // Still refused: revocation is not undone by issuing.
    assert_eq!(projects(app.token.clone()).await.status, StatusCode::UNAUTHORIZED);
}

/// PostgreSQL's detail quotes the row (`Key (phone)=(+507…) already
/// exists`): the log names the error by code and constraint only.
#[tokio::test]
async fn a_database_error_is_logged_by_code_and_constraint_not_by_the_values_it_quotes() {
    use axum::response::IntoResponse;
    let (_, pool) = testkit::database().await;
    sqlx::query("CREATE TABLE numbers (phone text CONSTRAINT numbers_phone_key UNIQUE)")
        .execute(&pool)
        .await
        .unwrap();
    let insert = || sqlx::query("INSERT INTO numbers VALUES ('+50762617737')").execute(&pool);
    insert().await.unwrap();
    let error = insert().await.unwrap_err();

    let captured = testkit::logs::Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let response = tracing::subscriber::with_default(subscriber, || api::error::ApiError::from(error).into_response());
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let logs = captured.text();
    assert!(
        logs.contains("23505") && logs.contains("numbers_phone_key") && logs.contains("numbers"),
        "{logs}"
    );
    assert!(!testkit::logs::holds_digits_of(&logs, "50762617737", 6), "{logs}");
}
