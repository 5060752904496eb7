//! Bad input gets the contract's error envelope, never a 500, and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::TestApp;

async fn raw_post(app: &TestApp, path: &str, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn count(app: &TestApp) -> i64 {
    app.count("phone_validations").await
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_in_the_envelope() {
    let app = TestApp::spawn().await;
    let (status, body) = raw_post(
        &app,
        "/v2/phone-validations",
        Some(&app.token),
        b"{\"project\": ".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"code": "BadRequest", "message": "400:invalid_json"})
        )
    );
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let (status, body) = raw_post(&app, "/v2/projects", Some(&app.token), big.into_bytes()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"code": "PayloadTooLarge", "message": "413:payload_too_large"})
        )
    );
    // An array is no body of this API, not even one that lists a struct's
    // fields in order (which serde would read as the struct).
    for array in [&b"[]"[..], b" [\"Acme\"]", b"[null, null, null]"] {
        let (status, body) = raw_post(&app, "/v2/projects", Some(&app.token), array.to_vec()).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (StatusCode::BAD_REQUEST, Some("400:invalid_json"))
        );
    }
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn missing_and_ill_typed_fields_are_named() {
    let app = TestApp::spawn().await;
    let (project, flow) = app.project_and_flow(json!({})).await;
    let missing = app
        .post(
            "/v2/phone-validations",
            json!({"project": project, "projectFlow": flow, "validationMethod": "verificationCode", "type": "login"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::CONFLICT);
    assert_eq!(
        missing.body,
        json!({"code": "MissingParameter", "message": "409:missing countryCode, missing phone"})
    );

    let base = TestApp::create_body(&project, &flow, "62617737");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("countryCode", json!(507), "400:invalid_countryCode"),
        ("countryCode", json!("+99999"), "400:invalid_countryCode"),
        ("phone", json!("123"), "400:invalid_phone"),
        ("phone", json!("6261773x"), "400:invalid_phone"),
        ("phone", json!(true), "400:invalid_phone"),
        ("type", json!("banana"), "400:invalid_type"),
        (
            "validationMethod",
            json!("carrierPigeon"),
            "400:invalid_validationMethod",
        ),
        ("phoneGateway", json!("fax"), "400:invalid_phoneGateway"),
        ("language", json!("tlh"), "400:invalid_language"),
        ("requires2FA", json!("yes"), "400:invalid_requires2FA"),
        ("name", json!("n".repeat(201)), "400:invalid_name"),
        ("webhookUrl", json!("not a url"), "400:invalid_webhookUrl"),
        (
            "redirectUrl",
            json!(format!("https://example.com/{}", "a".repeat(3000))),
            "400:invalid_redirectUrl",
        ),
        ("ipAddress", json!("999.1.1.1"), "400:invalid_ipAddress"),
        ("expiresAt", json!("yesterday"), "400:invalid_expiresAt"),
        ("expiresAt", json!("2001-01-01T00:00:00Z"), "400:invalid_expiresAt"),
        ("extraParams", json!([1, 2]), "400:invalid_extraParams"),
        ("project", json!("not-an-id"), "404:project_not_found"),
        (
            "projectFlow",
            json!("ffffffffffffffffffffffff"),
            "404:projectFlow_not_found",
        ),
    ];
    for (field, value, expected) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let r = app.post("/v2/phone-validations", body).await;
        assert_eq!(r.message(), expected, "{field} = {value}");
        assert!(r.status.is_client_error());
        assert_eq!(r.body["code"].as_str().map(|c| !c.is_empty()), Some(true));
    }
    assert_eq!(count(&app).await, 0, "nothing half-written");
}

#[tokio::test]
async fn tokens_must_be_present_valid_and_unexpired() {
    let app = TestApp::spawn().await;
    let expired = app.jwt.client_token(&app.client, 0, -1).unwrap();
    let forged = api::auth::Jwt::new(&secrecy::SecretString::from("not-the-secret"))
        .client_token(&app.client, 0, 1)
        .unwrap();
    for token in [None, Some("garbage"), Some(expired.as_str()), Some(forged.as_str())] {
        let r = app.request(reqwest::Method::GET, "/v2/projects", token, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, json!({"code": "Unauthorized", "message": "401:invalid_token"}));
    }
}

#[tokio::test]
async fn sql_metacharacters_are_only_data() {
    let app = TestApp::spawn().await;
    let nasty = "'; DROP TABLE phone_validations; -- \" \\ %_ $1";
    let project = app.post("/v2/projects", json!({"name": nasty})).await;
    assert_eq!(project.status, StatusCode::OK);
    assert_eq!(project.data()["name"], nasty);
    let project_id = project.data()["_id"].as_str().unwrap().to_owned();
    let flow = app
        .post("/v2/project-flows", json!({"project": project_id, "type": "login"}))
        .await;
    let flow_id = flow.data()["_id"].as_str().unwrap().to_owned();
    let mut body = TestApp::create_body(&project_id, &flow_id, "62617737");
    for field in ["name", "extraParams"] {
        body[field] = if field == "extraParams" {
            json!({"k": nasty})
        } else {
            json!(nasty)
        };
    }
    assert_eq!(app.post("/v2/phone-validations", body).await.status, StatusCode::OK);
    for field in [
        "project",
        "projectFlow",
        "countryCode",
        "phone",
        "validationMethod",
        "type",
        "phoneGateway",
        "language",
        "webhookUrl",
        "ipAddress",
    ] {
        let mut body = TestApp::create_body(&project_id, &flow_id, "62617738");
        body[field] = json!(nasty);
        let r = app.post("/v2/phone-validations", body).await;
        assert!(r.status.is_client_error(), "{field}: {:?}", r.body);
    }
    for path in [
        format!("/v2/phone-validations/{}", urlencode(nasty)),
        format!("/v2/phone-validations?phone={}", urlencode(nasty)),
        format!("/v2/phone-validations?project={}", urlencode(nasty)),
        format!("/v2/projects/{}", urlencode(nasty)),
    ] {
        let r = app.get(&path).await;
        assert!(r.status.is_client_error(), "{path}: {:?}", r.body);
    }
    let v = app.validate(nasty, json!(nasty)).await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST);
    assert_eq!(count(&app).await, 1);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    let app = TestApp::spawn().await;
    let r = app.get("/v2/nothing-here").await;
    assert_eq!((r.status, r.message()), (StatusCode::NOT_FOUND, "404:route_not_found"));
    let r = app
        .request(reqwest::Method::DELETE, "/v2/projects", Some(&app.token.clone()), None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["code"], "MethodNotAllowed");
    let allow = r.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "allow: {allow:?}");
}

#[tokio::test]
async fn nul_characters_are_refused_naming_their_field() {
    let app = TestApp::spawn().await;
    let r = app.post("/v2/projects", json!({"name": "a\u{0}b"})).await;
    assert_eq!((r.status, r.message()), (StatusCode::BAD_REQUEST, "400:invalid_name"));
    assert_eq!(r.body["code"], "BadRequest");
    let (project, flow) = app.project_and_flow(json!({})).await;

    let flow_body = |phone: Value| json!({"project": project, "type": "login", "phone": phone});
    let r = app
        .post(
            "/v2/project-flows",
            flow_body(json!({"webhookUrl": "https://example.com/\u{0}"})),
        )
        .await;
    assert_eq!(r.message(), "400:invalid_webhookUrl");
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/v2/project-flows/{flow}"),
            Some(&app.token),
            Some(json!({"phone": {"testNumbers": {"+507300\u{0}1234": "123456"}}})),
        )
        .await;
    assert_eq!(r.message(), "400:invalid_testNumbers");

    let cases: Vec<(&str, Value, &str)> = vec![
        ("name", json!("Ana\u{0}"), "400:invalid_name"),
        ("extraParams", json!({"k": "v\u{0}"}), "400:invalid_extraParams"),
        ("extraParams", json!({"k\u{0}": 1}), "400:invalid_extraParams"),
        ("extraParams", json!({"a": {"b": ["\u{0}"]}}), "400:invalid_extraParams"),
        (
            "redirectUrl",
            json!("https://example.com/a\u{0}b"),
            "400:invalid_redirectUrl",
        ),
        (
            "webhookUrl",
            json!("https://example.com/\u{0}"),
            "400:invalid_webhookUrl",
        ),
        (
            "identityUrl",
            json!("https://example.com/\u{0}"),
            "400:invalid_identityUrl",
        ),
        ("ipAddress", json!("10.0.0.1\u{0}"), "400:invalid_ipAddress"),
    ];
    for (field, value, expected) in cases {
        let mut body = TestApp::create_body(&project, &flow, "62617737");
        body[field] = value.clone();
        let r = app.post("/v2/phone-validations", body).await;
        assert_eq!(
            (r.status, r.message()),
            (StatusCode::BAD_REQUEST, expected),
            "{field} = {value}"
        );
    }
    let v = app
        .post(
            "/v2/phone-validations/validate",
            json!({"phone": "62617737", "countryCode": "+507", "otp": "12\u{0}456"}),
        )
        .await;
    assert_eq!(v.message(), "400:invalid_otp");
    // An escaped backslash followed by `u0000` is not a NUL.
    let r = raw_post(
        &app,
        "/v2/projects",
        Some(&app.token),
        br#"{"name": "C:\\u0000"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
    assert_eq!(r.1["data"]["name"], "C:\\u0000");
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn path_ids_that_are_not_utf8_are_not_found_in_the_envelope() {
    let app = TestApp::spawn().await;
    for (path, expected) in [
        ("/v2/projects/%FF", "404:project_not_found"),
        ("/v2/project-flows/%FF%FE", "404:projectFlow_not_found"),
        ("/v2/phone-validations/%C3%28", "404:phone_validation_not_found"),
    ] {
        let r = app.get(path).await;
        assert_eq!((r.status, r.message()), (StatusCode::NOT_FOUND, expected), "{path}");
        assert_eq!(r.body["code"], "NotFound");
    }
    let r = app
        .request(
            reqwest::Method::PUT,
            "/v2/project-flows/%FF",
            Some(&app.token),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.message(), "404:projectFlow_not_found");
}

#[tokio::test]
async fn bad_flow_settings_name_the_deepest_field() {
    let app = TestApp::spawn().await;
    let (project, flow) = app.project_and_flow(json!({})).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"otpLength": -1}), "400:invalid_otpLength"),
        (json!({"otpLength": 1.5}), "400:invalid_otpLength"),
        (json!({"otpLength": "6"}), "400:invalid_otpLength"),
        (json!({"otpLength": 3}), "400:invalid_otpLength"),
        (json!({"language": "tlh"}), "400:invalid_language"),
        (json!({"phoneGateway": "fax"}), "400:invalid_phoneGateway"),
        (json!({"maxAttempts": -3}), "400:invalid_maxAttempts"),
        (json!({"allowedCountries": [1]}), "400:invalid_allowedCountries"),
        (
            json!({"testNumbers": {"+5073001234": 123456}}),
            "400:invalid_testNumbers",
        ),
        (
            json!({"rateLimits": {"ipAddress": {"perMinute": -1}}}),
            "400:invalid_perMinute",
        ),
        (json!({"fraudGuard": "sometimes"}), "400:invalid_fraudGuard"),
        (json!("not settings"), "400:invalid_phone"),
    ];
    for (phone, expected) in cases {
        let r = app
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": phone.clone()}),
            )
            .await;
        assert_eq!(
            (r.status, r.message()),
            (StatusCode::BAD_REQUEST, expected),
            "create {phone}"
        );
        let r = app
            .request(
                reqwest::Method::PUT,
                &format!("/v2/project-flows/{flow}"),
                Some(&app.token),
                Some(json!({"phone": phone.clone()})),
            )
            .await;
        assert_eq!(
            (r.status, r.message()),
            (StatusCode::BAD_REQUEST, expected),
            "update {phone}"
        );
    }
}
