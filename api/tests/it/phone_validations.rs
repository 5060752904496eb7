//! Create → (code stored as the dispatcher does) → validate, against the real
//! PostgreSQL and RabbitMQ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::TestApp;

#[tokio::test]
async fn the_seed_create_request_answers_new_and_queues_otp_requested() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let response = app
        .post(
            "/v2/phone-validations",
            TestApp::create_body(&project, &flow, "62647737"),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    let data = response.data();
    for (field, expected) in [
        ("project", json!(project)),
        ("projectFlow", json!(flow)),
        ("countryCode", json!("+507")),
        ("phone", json!("62647737")),
        ("validationMethod", json!("verificationCode")),
        ("type", json!("login")),
        ("status", json!("new")),
        ("phoneGateway", json!("sms")),
        // No language anywhere: the number's country picks (+507 is Panama).
        ("language", json!("es")),
        ("attempts", json!(0)),
        ("maxAttempts", json!(3)),
        ("client", json!(app.client.to_string())),
        ("requires2FA", json!(false)),
    ] {
        assert_eq!(data[field], expected, "field {field}");
    }
    assert_eq!(data["_id"].as_str().unwrap().len(), 24);
    assert!(data.get("otp").is_none(), "no code before the dispatcher stores one");
    assert_eq!(data["phoneData"]["title"], "Verifik Client");
    let created = chrono::DateTime::parse_from_rfc3339(data["createdAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(data["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 600);
    assert!(data["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(response.body["id"].as_str().unwrap().len(), 5);
    assert_eq!(
        response.headers["x-request-id"].to_str().unwrap(),
        response.body["id"].as_str().unwrap()
    );
    assert_eq!(response.body["signature"]["message"], "Certified by Verifik.co");

    app.wait_outbox_empty().await;
    let messages = app.drain(&app.topology.dispatch_queue()).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["validationId"], data["_id"]);
    assert_eq!(messages[0]["eventId"].as_str().unwrap().len(), 24);
}

#[tokio::test]
async fn a_right_code_validates_once_and_emits_a_validated_event() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let created = app.create_validation(&project, &flow, "62617737").await;
    let id = created["_id"].as_str().unwrap();

    let early = app.validate("62617737", json!("123456")).await;
    assert_eq!(
        (early.status, early.message()),
        (StatusCode::CONFLICT, "409:otp_not_sent")
    );

    app.store_code(id, "123456").await;
    let read = app.get(&format!("/v2/phone-validations/{id}")).await;
    assert!(
        read.data()["otp"].as_str().unwrap().starts_with("$2b$"),
        "the object shows only the hash"
    );

    let ok = app.validate("6261-7737", json!(123456)).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.data()["_id"], id);
    assert_eq!(ok.data()["status"], "validated");
    assert_eq!(ok.data()["showFaceLivenessRecommendation"], false);
    let token = ok.data()["token"].as_str().expect("login validations get a token");
    assert_eq!(token.split('.').count(), 3);
    assert!(
        app.jwt.verify_client(token).is_none(),
        "a login token is not a client token"
    );

    let again = app.validate("62617737", json!("123456")).await;
    assert_eq!(
        (again.status, again.message()),
        (StatusCode::CONFLICT, "409:phone_validation_already_validated")
    );
    let read = app.get(&format!("/v2/phone-validations/{id}")).await;
    assert_eq!(read.data()["status"], "validated");
    assert!(read.data()["validatedAt"].as_str().is_some());
    assert_eq!(read.data()["attempts"], 0);

    let events = app.published(&app.topology.webhook_queue()).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "phone_validation_validated");
    assert_eq!(events[0]["data"]["_id"], id);
    assert_eq!(events[0]["data"]["status"], "validated");
}

#[tokio::test]
async fn a_wrong_code_three_times_fails_the_validation() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let id = app.sent_validation(&project, &flow, "62617737", "654321").await;

    for attempt in 1..=2 {
        let wrong = app.validate("62617737", json!("111111")).await;
        assert_eq!(
            (wrong.status, wrong.message()),
            (StatusCode::FORBIDDEN, "403:otp_does_not_match"),
            "attempt {attempt}"
        );
    }
    let third = app.validate("62617737", json!("111111")).await;
    assert_eq!(
        (third.status, third.message()),
        (StatusCode::FORBIDDEN, "403:max_attempts_exceeded")
    );
    let right_too_late = app.validate("62617737", json!("654321")).await;
    assert_eq!(right_too_late.message(), "403:max_attempts_exceeded");

    let read = app.get(&format!("/v2/phone-validations/{id}")).await;
    assert_eq!(read.data()["status"], "failed");
    assert_eq!(read.data()["failedReason"], "max_attempts_exceeded");
    assert_eq!(read.data()["attempts"], 3);

    let events = app.published(&app.topology.webhook_queue()).await;
    assert_eq!(events.len(), 1, "one failed event: {events:?}");
    assert_eq!(events[0]["type"], "phone_validation_failed");
    assert_eq!(events[0]["data"]["failedReason"], "max_attempts_exceeded");
}

#[tokio::test]
async fn an_expired_code_answers_412_and_fails_once() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let id = app.sent_validation(&project, &flow, "62617737", "123456").await;
    sqlx::query("UPDATE phone_validations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();

    for _ in 0..2 {
        let expired = app.validate("62617737", json!("123456")).await;
        assert_eq!(
            (expired.status, expired.message()),
            (StatusCode::PRECONDITION_FAILED, "412:phoneValidation_has_expired")
        );
    }
    let read = app.get(&format!("/v2/phone-validations/{id}")).await;
    assert_eq!(
        (read.data()["status"].as_str(), read.data()["failedReason"].as_str()),
        (Some("failed"), Some("expired"))
    );
    let events = app.published(&app.topology.webhook_queue()).await;
    assert_eq!(events.len(), 1, "the failed event is emitted once: {events:?}");
    assert_eq!(events[0]["data"]["failedReason"], "expired");
}

#[tokio::test]
async fn leading_zeros_are_part_of_the_code() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let _ = app.sent_validation(&project, &flow, "62617737", "012345").await;

    let as_number = app.validate("62617737", json!(12345)).await;
    assert_eq!(
        (as_number.status, as_number.message()),
        (StatusCode::BAD_REQUEST, "400:invalid_otp")
    );
    let letters = app.validate("62617737", json!("01234a")).await;
    assert_eq!(letters.message(), "400:invalid_otp");
    let ok = app.validate("62617737", json!("012345")).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
}

#[tokio::test]
async fn twenty_concurrent_wrong_guesses_consume_exactly_twenty_attempts() {
    let (app, project, flow) = TestApp::with_flow(json!({"maxAttempts": 20})).await;
    let id = app.sent_validation(&project, &flow, "62617737", "999999").await;

    let guesses = (0..20).map(|i| app.validate("62617737", json!(format!("{:06}", i))));
    let answers = futures_util::future::join_all(guesses).await;
    let exceeded = answers
        .iter()
        .filter(|r| r.message() == "403:max_attempts_exceeded")
        .count();
    let mismatched = answers
        .iter()
        .filter(|r| r.message() == "403:otp_does_not_match")
        .count();
    assert_eq!(
        (mismatched, exceeded),
        (19, 1),
        "{:?}",
        answers.iter().map(|r| r.message()).collect::<Vec<_>>()
    );
    let read = app.get(&format!("/v2/phone-validations/{id}")).await;
    assert_eq!(read.data()["attempts"], 20);
    assert_eq!(read.data()["status"], "failed");
}

#[tokio::test]
async fn concurrent_right_guesses_validate_exactly_once() {
    let (app, project, flow) = TestApp::with_flow(json!({"maxAttempts": 20})).await;
    let _ = app.sent_validation(&project, &flow, "62617737", "424242").await;
    let answers = futures_util::future::join_all((0..20).map(|_| app.validate("62617737", json!("424242")))).await;
    let successes = answers.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(successes, 1);
    assert!(answers
        .iter()
        .filter(|r| r.status != StatusCode::OK)
        .all(|r| r.message() == "409:phone_validation_already_validated"));
    app.wait_outbox_empty().await;
    assert_eq!(app.drain(&app.topology.webhook_queue()).await.len(), 1);
}

#[tokio::test]
async fn a_second_code_within_the_cooldown_is_refused_unless_forced() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 60})).await;
    app.create_validation(&project, &flow, "62617737").await;
    let again = app
        .post(
            "/v2/phone-validations",
            TestApp::create_body(&project, &flow, "62617737"),
        )
        .await;
    assert_eq!(
        (again.status, again.message()),
        (StatusCode::CONFLICT, "409:otp_recently_sent")
    );
    let retry_after: u64 = again.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    let mut forced = TestApp::create_body(&project, &flow, "62617737");
    forced["force"] = json!(true);
    assert_eq!(app.post("/v2/phone-validations", forced).await.status, StatusCode::OK);
    let other_phone = app
        .post(
            "/v2/phone-validations",
            TestApp::create_body(&project, &flow, "62617738"),
        )
        .await;
    assert_eq!(other_phone.status, StatusCode::OK);
}

#[tokio::test]
async fn the_hourly_cap_answers_429_even_when_forced() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0, "maxSendsPerHour": 2})).await;
    for _ in 0..2 {
        app.create_validation(&project, &flow, "62617737").await;
    }
    let mut forced = TestApp::create_body(&project, &flow, "62617737");
    forced["force"] = json!(true);
    let capped = app.post("/v2/phone-validations", forced).await;
    assert_eq!(
        (capped.status, capped.message()),
        (StatusCode::TOO_MANY_REQUESTS, "429:too_many_requests")
    );
    let retry_after: u64 = capped.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn concurrent_creates_for_one_phone_respect_the_cooldown() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 60})).await;
    let body = TestApp::create_body(&project, &flow, "62617737");
    let answers =
        futures_util::future::join_all((0..10).map(|_| app.post("/v2/phone-validations", body.clone()))).await;
    assert_eq!(answers.iter().filter(|r| r.status == StatusCode::OK).count(), 1);
    assert_eq!(answers.iter().filter(|r| r.status == StatusCode::CONFLICT).count(), 9);
}

#[tokio::test]
async fn a_burst_of_creates_is_written_in_groups_and_each_gets_its_own_record_and_event() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 60})).await;
    // 40 phones, three of them asked for twice in the same burst.
    let phones: Vec<String> = (0..40)
        .map(|n| format!("6{n:07}"))
        .chain((0..3).map(|n| format!("6{n:07}")))
        .collect();
    let answers = create_all(&app, &project, &flow, &phones).await;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .map(|r| r.data())
        .collect();
    assert_eq!(accepted.len(), 40, "one per phone");
    assert_eq!(
        answers.iter().filter(|r| r.status == StatusCode::CONFLICT).count(),
        3,
        "the repeats meet the cooldown"
    );
    let mut answered: Vec<(String, String)> = accepted
        .iter()
        .map(|v| {
            (
                v["_id"].as_str().unwrap().to_owned(),
                v["phone"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    answered.sort();
    let mut stored: Vec<(String, String)> = sqlx::query_as("SELECT id, phone FROM phone_validations ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    stored.sort();
    assert_eq!(answered, stored, "each answer is its own stored record");
    // Rows written by one statement share its transaction's now().
    let commits: i64 = sqlx::query_scalar("SELECT count(DISTINCT created_at) FROM phone_validations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(commits < 40, "40 creates took {commits} commits");
    app.wait_outbox_empty().await;
    let mut events: Vec<String> = app
        .drain(&app.topology.dispatch_queue())
        .await
        .iter()
        .map(|e| e["validationId"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(events, stored.into_iter().map(|(id, _)| id).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_group_whose_statement_fails_is_written_one_at_a_time() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    // A fault in the database for one phone only: any statement inserting it
    // fails, so a group holding it fails whole.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_one_phone() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.phone = '69999999' THEN RAISE EXCEPTION 'injected fault'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_one_phone BEFORE INSERT ON phone_validations
            FOR EACH ROW EXECUTE FUNCTION refuse_one_phone();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let phones: Vec<String> = (0..30)
        .map(|n| format!("6{n:07}"))
        .chain(std::iter::once("69999999".to_owned()))
        .collect();
    let answers = create_all(&app, &project, &flow, &phones).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses[..30].iter().filter(|s| **s == StatusCode::OK).count(),
        30,
        "the others are written: {statuses:?}"
    );
    assert_eq!(
        statuses[30],
        StatusCode::INTERNAL_SERVER_ERROR,
        "the faulty one alone fails"
    );
    assert_eq!(app.count("phone_validations").await, 30);
    // Nothing half-written: the refused phone has no ledger entry and no event.
    assert_eq!(app.count("phone_send_windows WHERE phone = '69999999'").await, 0);
    assert_eq!(app.published(&app.topology.dispatch_queue()).await.len(), 30);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_creates_nothing() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let body = TestApp::create_body(&project, &flow, "62617737");
    let send = |body: Value| {
        app.http
            .post(format!("{}/v2/phone-validations", app.base))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first: Value = send(body.clone()).await.unwrap().json().await.unwrap();
    let second = send(body.clone()).await.unwrap();
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "a replay is not refused by the cooldown"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["data"], second["data"]);
    let mut changed = body.clone();
    changed["phone"] = json!("62617738");
    assert_eq!(send(changed).await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("phone_validations").await, 1);
    assert_eq!(app.published(&app.topology.dispatch_queue()).await.len(), 1);
}

#[tokio::test]
async fn another_client_sees_nothing_of_this_one() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    let id = app.sent_validation(&project, &flow, "62617737", "123456").await;
    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let as_b = |method: reqwest::Method, path: String, body: Option<Value>| {
        let token = token.clone();
        let app = &app;
        async move { app.request(method, &path, Some(&token), body).await }
    };
    use reqwest::Method;
    for (path, token) in [
        (format!("/v2/projects/{project}"), "404:project_not_found"),
        (format!("/v2/project-flows/{flow}"), "404:projectFlow_not_found"),
        (format!("/v2/phone-validations/{id}"), "404:phone_validation_not_found"),
    ] {
        let r = as_b(Method::GET, path, None).await;
        assert_eq!((r.status, r.message()), (StatusCode::NOT_FOUND, token));
    }
    let put = as_b(
        Method::PUT,
        format!("/v2/project-flows/{flow}"),
        Some(json!({"phone": {"otpLength": 4}})),
    )
    .await;
    assert_eq!(put.message(), "404:projectFlow_not_found");
    let create = as_b(
        Method::POST,
        "/v2/phone-validations".into(),
        Some(TestApp::create_body(&project, &flow, "62617737")),
    )
    .await;
    assert_eq!(create.message(), "404:project_not_found");
    let flow_create = as_b(
        Method::POST,
        "/v2/project-flows".into(),
        Some(json!({"project": project, "type": "login"})),
    )
    .await;
    assert_eq!(flow_create.message(), "404:project_not_found");
    let validate = as_b(
        Method::POST,
        "/v2/phone-validations/validate".into(),
        Some(json!({"phone": "62617737", "countryCode": "+507", "otp": "123456"})),
    )
    .await;
    assert_eq!(validate.message(), "404:phone_validation_not_found");
    for list in ["/v2/projects", "/v2/project-flows", "/v2/phone-validations"] {
        let r = as_b(Method::GET, list.into(), None).await;
        assert_eq!(r.data().as_array().map(Vec::len), Some(0), "{list}");
        assert_eq!(r.body["pagination"]["total"], 0);
    }
    let mine = app.get(&format!("/v2/phone-validations/{id}")).await;
    assert_eq!(mine.status, StatusCode::OK);
}

#[tokio::test]
async fn lists_page_and_filter() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0})).await;
    for phone in ["62617731", "62617732", "62617733"] {
        app.create_validation(&project, &flow, phone).await;
    }
    let page = app.get("/v2/phone-validations?page=2&limit=2").await;
    assert_eq!(page.data().as_array().unwrap().len(), 1);
    assert_eq!(
        page.body["pagination"],
        json!({"page": 2, "limit": 2, "total": 3, "pages": 2})
    );
    let filtered = app
        .get(&format!(
            "/v2/phone-validations?phone=62617732&countryCode=%2B507&status=new&projectFlow={flow}"
        ))
        .await;
    assert_eq!(filtered.data().as_array().unwrap().len(), 1);
    assert_eq!(filtered.data()[0]["phone"], "62617732");
    let newest_first = app.get("/v2/phone-validations").await;
    assert_eq!(newest_first.data()[0]["phone"], "62617733");
    assert_eq!(
        app.get("/v2/phone-validations?limit=100000").await.message(),
        "400:invalid_limit"
    );
    assert_eq!(
        app.get("/v2/phone-validations?status=lost").await.message(),
        "400:invalid_status"
    );
    let flows = app.get(&format!("/v2/project-flows?project={project}")).await;
    assert_eq!(flows.data()[0]["phone"]["resendCooldownSeconds"], 0);
}

/// Creates a validation for each phone, all at once.
async fn create_all(app: &TestApp, project: &str, flow: &str, phones: &[String]) -> Vec<testkit::Response> {
    futures_util::future::join_all(
        phones
            .iter()
            .map(|phone| app.post("/v2/phone-validations", TestApp::create_body(project, flow, phone))),
    )
    .await
}

async fn put_flow(app: &TestApp, flow: &str, body: Value) -> testkit::Response {
    let path = format!("/v2/project-flows/{flow}");
    app.request(reqwest::Method::PUT, &path, Some(&app.token.clone()), Some(body))
        .await
}

#[tokio::test]
async fn flows_update_only_the_settings_given() {
    let (app, _project, flow) =
        TestApp::with_flow(json!({"otpLength": 8, "testNumbers": {"+5073001234": "12345678"}})).await;
    let updated = put_flow(&app, &flow, json!({"phone": {"maxAttempts": 5}})).await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.data()["phone"]["otpLength"], 8);
    assert_eq!(updated.data()["phone"]["maxAttempts"], 5);
    assert_eq!(updated.data()["phone"]["testNumbers"]["+5073001234"], "12345678");
    let bad = put_flow(&app, &flow, json!({"phone": {"otpLength": 3}})).await;
    assert_eq!(bad.message(), "400:invalid_otpLength");
}
