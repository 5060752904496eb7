//! One number is one number whatever way it is typed; a number that cannot
//! receive an SMS is refused; a stored code is compared as soon as it is
//! stored; a phone's newest code supersedes its older ones; guessing is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::TestApp;

fn body(project: &str, flow: &str, country_code: &str, phone: &str) -> Value {
    let mut body = TestApp::create_body(project, flow, phone);
    body["countryCode"] = json!(country_code);
    body
}

#[tokio::test]
async fn a_number_typed_with_its_trunk_prefix_is_the_same_number() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let first = app
        .post("/v2/phone-validations", body(&project, &flow, "+44", "07911 123456"))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.data()["phone"], "7911123456", "stored in canonical form");
    let again = app
        .post("/v2/phone-validations", body(&project, &flow, "+44", "7911123456"))
        .await;
    assert_eq!(
        (again.status, again.message()),
        (StatusCode::CONFLICT, "409:otp_recently_sent"),
        "the cooldown knows it is the same phone"
    );
    let id = first.data()["_id"].as_str().unwrap();
    app.store_code(id, "123456").await;
    let validated = app
        .post(
            "/v2/phone-validations/validate",
            json!({"countryCode": "+44", "phone": "7911 123456", "otp": "123456"}),
        )
        .await;
    assert_eq!(
        validated.status,
        StatusCode::OK,
        "validated in the other form: {:?}",
        validated.body
    );
    let listed = app
        .get("/v2/phone-validations?countryCode=%2B44&phone=07911123456")
        .await;
    assert_eq!(listed.body["pagination"]["total"], 1, "listed in either form");
}

/// The list's phone filter reads a number as it is typed: national (with a
/// trunk prefix or not) with its country code, or international with `+` or
/// `00`; it compares the canonical form.
#[tokio::test]
async fn a_validation_is_found_by_its_number_in_any_format() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let created = app
        .post("/v2/phone-validations", body(&project, &flow, "+1", "(415) 555-0123"))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    let id = created.data()["_id"].as_str().unwrap();
    app.create_validation(&project, &flow, "62617731").await;
    let found = |query: &'static str| {
        let app = &app;
        async move {
            let answer = app.get(&format!("/v2/phone-validations?{query}")).await;
            assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
            let ids = answer.data().as_array().unwrap().iter();
            ids.map(|v| v["_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    for query in [
        "phone=%2B1%20(415)%20555-0123",
        "phone=001%20415%20555%200123",
        "phone=%2B1%201%20415%20555%200123",
        "phone=4155550123",
        "countryCode=%2B1&phone=415-555-0123",
        "countryCode=1&phone=1%20415%20555%200123",
        "countryCode=%2B1&phone=%2B14155550123",
        "countryCode=%2B1&phone=001-415-555-0123",
    ] {
        assert_eq!(found(query).await, [id], "{query}");
    }
    for query in [
        "countryCode=%2B507&phone=%2B1%20415%20555%200123",
        "countryCode=%2B44&phone=415-555-0123",
        "phone=%2B44%20415%20555%200123",
        "phone=%2B1%20415%20555%200124",
    ] {
        assert!(found(query).await.is_empty(), "{query}");
    }
    for query in ["phone=%2B", "phone=%2B1-415-CALL-NOW", "phone=%2B%2B1415"] {
        let refused = app.get(&format!("/v2/phone-validations?{query}")).await;
        assert_eq!(refused.message(), "400:invalid_phone", "{query}");
    }
}

#[tokio::test]
async fn numbers_that_cannot_receive_an_sms_are_refused_unless_they_are_test_numbers() {
    let (app, project, flow) = TestApp::with_flow(json!({"testNumbers": {"+5073001234": "123456"}})).await;
    for (country, phone, what) in [
        ("+44", "909 876 5432", "premium rate"),
        ("+44", "20 7946 0958", "fixed line"),
        ("+507", "300-1235", "fixed line"),
    ] {
        let refused = app
            .post("/v2/phone-validations", body(&project, &flow, country, phone))
            .await;
        assert_eq!(
            (refused.status, refused.message()),
            (StatusCode::BAD_REQUEST, "400:invalid_phone"),
            "{what}"
        );
    }
    assert_eq!(app.count("phone_validations").await, 0, "nothing written");
    let test_number = app
        .post("/v2/phone-validations", body(&project, &flow, "+507", "300-1234"))
        .await;
    assert_eq!(
        test_number.status,
        StatusCode::OK,
        "a flow's test number: {:?}",
        test_number.body
    );
}

#[tokio::test]
async fn a_stored_code_is_compared_before_the_send_is_recorded() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let id = app.create_id(&project, &flow, "62617737", json!({})).await;
    // What the dispatcher does when it claims the send: the hash is stored,
    // the status is still `new` until the provider's answer is recorded.
    let hash = shared::otp::OtpHasher::new(secrecy::SecretString::from(testkit::api::PEPPER), 4)
        .hash(&id, &shared::otp::OtpCode::parse("246810").unwrap());
    sqlx::query("UPDATE phone_validations SET otp_hash = $2 WHERE id = $1 AND status = 'new'")
        .bind(&id)
        .bind(hash)
        .execute(&app.pool)
        .await
        .unwrap();
    let wrong = app.validate("62617737", json!("111111")).await;
    assert_eq!(wrong.message(), "403:otp_does_not_match", "compared, and counted");
    let right = app.validate("62617737", json!("246810")).await;
    assert_eq!(right.status, StatusCode::OK, "{:?}", right.body);
    assert_eq!(app.validation(&id).await["status"], "validated");
    let no_hash = app.create_id(&project, &flow, "62617738", json!({})).await;
    assert_eq!(app.validation(&no_hash).await["otp"], Value::Null);
    let refused = app.validate("62617738", json!("111111")).await;
    assert_eq!(
        refused.message(),
        "409:otp_not_sent",
        "nothing to compare before a hash is stored"
    );
}

#[tokio::test]
async fn a_new_code_for_a_phone_supersedes_the_older_open_one() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0})).await;
    let older = app.sent_validation(&project, &flow, "62617737", "111111").await;
    let newer = app.create_id(&project, &flow, "62617737", json!({})).await;
    let superseded = app.validation(&older).await;
    assert_eq!(
        (superseded["status"].as_str(), superseded["failedReason"].as_str()),
        (Some("failed"), Some("superseded"))
    );
    assert_eq!(app.validation(&newer).await["status"], "new");
    let events = app.published(&app.topology.webhook_queue()).await;
    assert_eq!(events.len(), 1, "one failed event, for the older one: {events:?}");
    assert_eq!(events[0]["data"]["_id"], older.as_str());
    assert_eq!(events[0]["data"]["failedReason"], "superseded");
    // A first send to a phone supersedes nothing.
    app.create_id(&project, &flow, "62617739", json!({})).await;
    assert_eq!(app.count("phone_validations WHERE status = 'failed'").await, 1);
}

#[tokio::test]
async fn guessing_is_bounded_and_a_code_lives_no_longer_than_its_flow_allows() {
    let (app, project, flow) = TestApp::with_flow(json!({"otpExpiresInSeconds": 300})).await;
    let risky = app
        .post(
            "/v2/project-flows",
            json!({"project": project, "type": "login", "phone": {"otpLength": 4, "maxAttempts": 20, "maxSendsPerHour": 10}}),
        )
        .await;
    assert_eq!(
        (risky.status, risky.message()),
        (StatusCode::BAD_REQUEST, "400:invalid_maxSendsPerHour")
    );
    let mut too_long = TestApp::create_body(&project, &flow, "62617737");
    too_long["expiresAt"] = json!(shared::time::format(
        &(chrono::Utc::now() + chrono::Duration::seconds(600))
    ));
    let refused = app.post("/v2/phone-validations", too_long).await;
    assert_eq!(
        (refused.status, refused.message()),
        (StatusCode::BAD_REQUEST, "400:invalid_expiresAt")
    );
    let mut shorter = TestApp::create_body(&project, &flow, "62617737");
    shorter["expiresAt"] = json!(shared::time::format(
        &(chrono::Utc::now() + chrono::Duration::seconds(120))
    ));
    assert_eq!(app.post("/v2/phone-validations", shorter).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_flow_answers_only_the_countries_it_allows_by_region_not_calling_code() {
    let settings = json!({"allowedCountries": ["PA", "US"], "testNumbers": {"+573001234599": "123456"}});
    let (app, project, flow) = TestApp::with_flow(settings).await;
    let us = app
        .post("/v2/phone-validations", body(&project, &flow, "+1", "415 555 2671"))
        .await;
    assert_eq!(us.status, StatusCode::OK, "{:?}", us.body);
    let canada = app
        .post("/v2/phone-validations", body(&project, &flow, "+1", "416 555 0123"))
        .await;
    assert_eq!(
        (canada.status, canada.message()),
        (StatusCode::FORBIDDEN, "403:country_not_allowed"),
        "+1 is many countries"
    );
    let colombia = app
        .post("/v2/phone-validations", body(&project, &flow, "+57", "300 123 4567"))
        .await;
    assert_eq!(colombia.message(), "403:country_not_allowed");
    assert_eq!(
        app.count("phone_validations").await,
        1,
        "nothing written for the refused ones"
    );
    let test_number = app
        .post("/v2/phone-validations", body(&project, &flow, "+57", "300 123 4599"))
        .await;
    assert_eq!(
        test_number.status,
        StatusCode::OK,
        "a flow's test number passes: {:?}",
        test_number.body
    );
    let flows = app
        .post(
            "/v2/project-flows",
            json!({"project": project, "type": "login", "phone": {"allowedCountries": ["Panama"]}}),
        )
        .await;
    assert_eq!(flows.message(), "400:invalid_allowedCountries");
}
