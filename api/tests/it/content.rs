//! Message content (docs/contract.md §14): languages as BCP 47 tags with a
//! default from the number's country, the flow's templates and autofill
//! lines checked when saved, and a flow's text previewed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::TestApp;

async fn language_of(app: &TestApp, project: &str, flow: &str, country: &str, phone: &str, extra: Value) -> Value {
    let mut extra = extra;
    extra["countryCode"] = json!(country);
    extra["force"] = json!(true);
    app.create_validation_with(project, flow, phone, extra).await["language"].clone()
}

#[tokio::test]
async fn the_language_is_the_requests_then_the_flows_then_the_numbers_countrys() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0})).await;
    let cases = [
        ("+55", "11987654321", json!({}), "pt-BR"),
        ("+33", "612345678", json!({}), "fr"),
        ("+507", "62617737", json!({}), "es"),
        ("+44", "7911123456", json!({}), "en"),
        ("+55", "11987654322", json!({"language": "es-CO"}), "es"),
        ("+507", "62617738", json!({"language": "pt_br"}), "pt-BR"),
        ("+507", "62617739", json!({"language": "zh-Hant-TW"}), "zh-TW"),
        ("+507", "62617740", json!({"language": "EN"}), "en"),
    ];
    for (country, phone, extra, expected) in cases {
        let language = language_of(&app, &project, &flow, country, phone, extra.clone()).await;
        assert_eq!(language, json!(expected), "{country} {phone} {extra}");
    }

    // The flow's language beats the country; the request's beats both.
    let (de_project, german) = app.project_and_flow(json!({"language": "de-AT"})).await;
    let read = app.get(&format!("/v2/project-flows/{german}")).await;
    assert_eq!(read.data()["phone"]["language"], "de", "stored in its canonical form");
    assert_eq!(
        language_of(&app, &de_project, &german, "+55", "11987654323", json!({})).await,
        "de"
    );
    assert_eq!(
        language_of(
            &app,
            &de_project,
            &german,
            "+55",
            "11987654324",
            json!({"language": "ja"})
        )
        .await,
        "ja"
    );
    // `""` gives the choice back to the number's country.
    let cleared = app
        .request(
            Method::PUT,
            &format!("/v2/project-flows/{german}"),
            Some(&app.token),
            Some(json!({"phone": {"language": ""}})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{:?}", cleared.body);
    assert!(cleared.data()["phone"].get("language").is_none(), "{:?}", cleared.body);
    assert_eq!(
        language_of(&app, &de_project, &german, "+55", "11987654325", json!({})).await,
        "pt-BR"
    );
}

#[tokio::test]
async fn a_tag_of_no_built_in_language_is_refused_with_invalid_language() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    for tag in ["tlh", "x", "en-", "pt--BR", "123", "en_US_POSIX_TOOLONGSUBTAG"] {
        let mut body = TestApp::create_body(&project, &flow, "62617737");
        body["language"] = json!(tag);
        let r = app.post("/v2/phone-validations", body).await;
        assert_eq!(
            (r.status, r.message()),
            (StatusCode::BAD_REQUEST, "400:invalid_language"),
            "{tag}"
        );
        let r = app
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": {"language": tag}}),
            )
            .await;
        assert_eq!(r.message(), "400:invalid_language", "{tag}");
    }
    assert_eq!(app.count("phone_validations").await, 0);
}

async fn put_phone(app: &TestApp, flow: &str, phone: Value) -> testkit::Response {
    app.request(
        Method::PUT,
        &format!("/v2/project-flows/{flow}"),
        Some(&app.token),
        Some(json!({ "phone": phone })),
    )
    .await
}

#[tokio::test]
async fn templates_and_autofill_settings_are_checked_when_the_flow_is_saved() {
    let (app, _project, flow) = TestApp::with_flow(json!({})).await;
    let long = "a".repeat(280);
    let refused = [
        (
            json!({"templates": {"sms": {"en": "Your code is ready"}}}),
            "400:invalid_templates",
        ),
        (
            json!({"templates": {"sms": {"en": "{code} for {user}"}}}),
            "400:invalid_templates",
        ),
        (
            json!({"templates": {"voice": {"en": "{code"}}}),
            "400:invalid_templates",
        ),
        (
            json!({"templates": {"sms": {"tlh": "{code}"}}}),
            "400:invalid_templates",
        ),
        (json!({"templates": {"fax": {"en": "{code}"}}}), "400:invalid_templates"),
        (json!({"templates": {"sms": {"en": 5}}}), "400:invalid_templates"),
        (
            json!({"templates": {"sms": {"en": format!("{long}{long}{{code}}")}}}),
            "400:invalid_templates",
        ),
        (
            json!({"webOtpDomain": "https://example.com"}),
            "400:invalid_webOtpDomain",
        ),
        (json!({"webOtpDomain": "example.com:443"}), "400:invalid_webOtpDomain"),
        (json!({"androidAppHash": "short"}), "400:invalid_androidAppHash"),
        (json!({"androidAppHash": "FA+9qCX9VS!"}), "400:invalid_androidAppHash"),
    ];
    for (phone, token) in refused {
        let r = put_phone(&app, &flow, phone.clone()).await;
        assert_eq!((r.status, r.message()), (StatusCode::BAD_REQUEST, token), "{phone}");
    }

    // 280 characters and a 10-digit code fit two segments (306 septets)...
    let fits = json!({"templates": {"sms": {"es-CO": format!("{long}{{code}}")}, "voice": {"pt-BR": "Código {code}"}}});
    let saved = put_phone(&app, &flow, fits).await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    let phone = &saved.data()["phone"];
    assert_eq!(
        phone["templates"]["sms"]["es"],
        format!("{long}{{code}}"),
        "canonical keys"
    );
    assert_eq!(phone["templates"]["voice"]["pt-BR"], "Código {code}");
    // ...but not with the WebOTP line after them: the lines count too.
    let r = put_phone(&app, &flow, json!({"webOtpDomain": "login.example.com"})).await;
    assert_eq!(r.message(), "400:invalid_templates");
    // The project's name counts as `{app}` does.
    let named = json!({"templates": {"sms": {"en": format!("{}{{code}} {{app}}", "a".repeat(282))}}});
    assert_eq!(put_phone(&app, &flow, named).await.message(), "400:invalid_templates");

    let autofill = json!({"templates": {}, "webOtpDomain": "Login.Example.com", "androidAppHash": "FA+9qCX9VSu"});
    let saved = put_phone(&app, &flow, autofill).await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    let phone = &saved.data()["phone"];
    assert!(phone.get("templates").is_none(), "{phone}");
    assert_eq!(phone["webOtpDomain"], "login.example.com");
    assert_eq!(phone["androidAppHash"], "FA+9qCX9VSu");
    let removed = put_phone(&app, &flow, json!({"webOtpDomain": "", "androidAppHash": ""})).await;
    assert!(removed.data()["phone"].get("webOtpDomain").is_none());
    assert!(removed.data()["phone"].get("androidAppHash").is_none());
}

async fn preview(app: &TestApp, flow: &str, body: Value) -> testkit::Response {
    app.post(&format!("/v2/project-flows/{flow}/preview"), body).await
}

#[tokio::test]
async fn a_preview_renders_the_flows_text_with_a_sample_code() {
    let (app, _project, flow) = TestApp::with_flow(json!({"otpLength": 4, "otpExpiresInSeconds": 300})).await;
    let english = preview(&app, &flow, json!({})).await;
    assert_eq!(english.status, StatusCode::OK, "{:?}", english.body);
    assert_eq!(
        english.data(),
        &json!({
            "text": "Your Verifik Client verification code is 1234. It expires in 5 minutes.",
            "segments": 1,
            "encoding": "GSM-7",
            "language": "en"
        })
    );
    let brazil = preview(&app, &flow, json!({"countryCode": "+55"})).await;
    assert_eq!(brazil.data()["language"], "pt-BR");
    assert!(brazil.data()["text"].as_str().unwrap().contains("1234"));
    let japanese = preview(&app, &flow, json!({"language": "ja-JP", "countryCode": "+55"})).await;
    assert_eq!(japanese.data()["language"], "ja");
    assert_eq!(japanese.data()["encoding"], "UCS-2");
    let voice = preview(&app, &flow, json!({"channel": "voice"})).await;
    assert!(
        voice.data()["text"].as_str().unwrap().contains("1, 2, 3, 4"),
        "{:?}",
        voice.body
    );
    assert!(voice.data().get("segments").is_none());

    let own = json!({"templates": {"sms": {"es": "{code} es tu código de {app} ({minutes} min)"}}, "webOtpDomain": "example.com"});
    assert_eq!(put_phone(&app, &flow, own).await.status, StatusCode::OK);
    let spanish = preview(&app, &flow, json!({"countryCode": "+507"})).await;
    assert_eq!(
        spanish.data()["text"],
        "1234 es tu código de Verifik Client (5 min)\n\n@example.com #1234"
    );
    assert_eq!(spanish.data()["segments"], 1);
    assert_eq!(spanish.data()["encoding"], "UCS-2", "'ó' is not GSM-7");
    let colombian = preview(&app, &flow, json!({"language": "es-CO"})).await;
    assert_eq!(
        colombian.data()["text"],
        spanish.data()["text"],
        "es-CO falls back to es"
    );
}

#[tokio::test]
async fn a_preview_refuses_bad_input_and_other_clients_flows() {
    let (app, _project, flow) = TestApp::with_flow(json!({})).await;
    for (body, token) in [
        (json!({"language": "tlh"}), "400:invalid_language"),
        (json!({"channel": "fax"}), "400:invalid_channel"),
        (json!({"countryCode": "55"}), "400:invalid_countryCode"),
        (json!({"countryCode": "+999"}), "400:invalid_countryCode"),
        (json!([]), "400:invalid_json"),
    ] {
        let r = preview(&app, &flow, body.clone()).await;
        assert_eq!((r.status, r.message()), (StatusCode::BAD_REQUEST, token), "{body}");
    }
    let unknown = preview(&app, "0123456789abcdef01234567", json!({})).await;
    assert_eq!(unknown.message(), "404:projectFlow_not_found");

    let other = testkit::create_client(&app.pool, "Other").await;
    let token = app.jwt.client_token(&other, 0, 1).unwrap();
    let r = app
        .request(
            Method::POST,
            &format!("/v2/project-flows/{flow}/preview"),
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (StatusCode::NOT_FOUND, "404:projectFlow_not_found")
    );
}
