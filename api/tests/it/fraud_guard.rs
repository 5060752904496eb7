//! The fraud guard, geo permissions, rate limits and conversion stats
//! (docs/contract.md §9, §10), against the real API, dispatcher and webhook worker,
//! PostgreSQL and RabbitMQ, with a loopback Twilio and webhook receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::fraud::GuardConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::dispatch::{code_in, created, Harness};
use testkit::webhooks::{start_worker, Options, Receiver};
use testkit::{infra, TestApp};

/// Short windows, as an operator would set them through the environment.
fn quick_guard() -> GuardConfig {
    GuardConfig {
        grace: Duration::from_secs(1),
        block: Duration::from_secs(600),
        window: Duration::from_secs(600),
        interval: Duration::from_millis(250),
    }
}

fn create_body(project: &str, flow: &str, phone: &str) -> Value {
    TestApp::create_body(project, flow, phone)
}

/// The code the Twilio stand-in received for `to` (E.164), once it has.
async fn code_for(h: &Harness, to: &str) -> String {
    infra::eventually(Duration::from_secs(20), "the code at the provider", || async {
        h.sms_requests()
            .await
            .iter()
            .find(|form| form.get("To").map(String::as_str) == Some(to))
            .map(|form| code_in(&form["Body"]))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pumping_beside_legitimate_traffic_is_blocked_and_legitimate_users_are_not() {
    let app = TestApp::spawn_guarded(quick_guard(), None).await;
    app.wait_for_broker().await;
    let h = Arc::new(Harness::with_app(app).await);
    h.sms_answers([], created("SMpumping")).await;
    h.start_dispatcher().await;
    let receiver = Receiver::answering(200).await;
    let (_worker, _running, _health) = start_worker(&h.app, &Options::default()).await;
    let (project, flow) = h.app.project_and_flow(json!({ "webhookUrl": receiver.url() })).await;

    // The attack: 400 creates to +507 626…, about 10 a second, never typed.
    let attack = {
        let (h, project, flow) = (h.clone(), project.clone(), flow.clone());
        tokio::spawn(async move {
            let mut answers: HashMap<StatusCode, usize> = HashMap::new();
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            for n in 0..400 {
                ticks.tick().await;
                let phone = format!("6260{n:04}");
                let answer = h
                    .app
                    .post("/v2/phone-validations", create_body(&project, &flow, &phone))
                    .await;
                if answer.status != StatusCode::OK {
                    assert_eq!(answer.message(), "403:fraud_guard_blocked", "{:?}", answer.body);
                }
                *answers.entry(answer.status).or_default() += 1;
            }
            answers
        })
    };
    // Meanwhile, legitimate users on +507 671…: each types the code a
    // second or so after it arrives.
    let started = Instant::now();
    let mut users = Vec::new();
    let mut n = 0;
    while !attack.is_finished() {
        let (h, project, flow) = (h.clone(), project.clone(), flow.clone());
        let phone = format!("6710{n:04}");
        n += 1;
        users.push(tokio::spawn(async move {
            let created = h
                .app
                .post("/v2/phone-validations", create_body(&project, &flow, &phone))
                .await;
            assert_eq!(
                created.status,
                StatusCode::OK,
                "a legitimate user refused: {:?}",
                created.body
            );
            let code = code_for(&h, &format!("+507{phone}")).await;
            tokio::time::sleep(Duration::from_millis(1000)).await; // the user reading and typing
            let validated = h.app.validate(&phone, json!(code)).await;
            assert_eq!(validated.status, StatusCode::OK, "{:?}", validated.body);
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answers = attack.await.unwrap();
    let legitimate = users.len();
    for user in users {
        user.await.unwrap();
    }
    let attack_sent = h
        .sms_requests()
        .await
        .iter()
        .filter(|form| form.get("To").is_some_and(|to| to.starts_with("+507626")))
        .count();
    println!(
        "attack: {answers:?}, {attack_sent} of 400 codes sent; {legitimate} legitimate users validated in {:?}",
        started.elapsed()
    );
    assert!(
        attack_sent * 10 <= 400 * 3,
        "at least 70 % of the attack's codes never sent: {attack_sent} sent"
    );
    assert!(
        legitimate >= 30,
        "enough legitimate traffic beside the attack: {legitimate}"
    );

    // The block is listed, refuses, and was told once to the flow's webhook.
    let blocks = h.app.get("/v2/fraud-guard/blocks").await;
    assert_eq!(blocks.status, StatusCode::OK);
    let listed = blocks.data().as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["prefix"], "+507626");
    assert_eq!(listed[0]["reason"], "low_conversion");
    let refused = h
        .app
        .post("/v2/phone-validations", create_body(&project, &flow, "62619999"))
        .await;
    assert_eq!(
        (refused.status, refused.message()),
        (StatusCode::FORBIDDEN, "403:fraud_guard_blocked")
    );
    assert!(refused.headers.contains_key("retry-after"));
    let received = receiver.wait_for(legitimate + 1, Duration::from_secs(30)).await;
    let blocked_hooks: Vec<Value> = received
        .iter()
        .map(|r| r.json())
        .filter(|body| body["type"] == "fraud_guard_blocked")
        .collect();
    assert_eq!(blocked_hooks.len(), 1, "one webhook per block");
    assert_eq!(blocked_hooks[0]["object"]["prefix"], "+507626");
    assert_eq!(blocked_hooks[0]["object"]["validated"], 0);
    let hook = received
        .iter()
        .find(|r| r.json()["type"] == "fraud_guard_blocked")
        .unwrap();
    hook.verify(testkit::webhooks::SECRET)
        .expect("signed like every webhook");

    // Another client is not affected.
    let other = testkit::api::create_client(&h.app.pool, "Other").await;
    let other_token = h.app.jwt.client_token(&other, 0, 1).unwrap();
    let request = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let token = other_token.clone();
        let app = &h.app;
        let path = path.to_owned();
        async move { app.request(method, &path, Some(&token), body).await }
    };
    let other_project = request(reqwest::Method::POST, "/v2/projects", Some(json!({"name": "Other"}))).await;
    let other_project = other_project.data()["_id"].as_str().unwrap().to_owned();
    let other_flow = request(
        reqwest::Method::POST,
        "/v2/project-flows",
        Some(json!({"project": other_project, "type": "login", "phone": {}})),
    )
    .await;
    let other_flow = other_flow.data()["_id"].as_str().unwrap().to_owned();
    let theirs = request(
        reqwest::Method::POST,
        "/v2/phone-validations",
        Some(create_body(&other_project, &other_flow, "62619999")),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::OK, "{:?}", theirs.body);

    // A safe-listed number in the blocked prefix passes.
    let safe = h
        .app
        .post("/v2/safe-list", json!({"countryCode": "+507", "phone": "6261-8888"}))
        .await;
    assert_eq!(safe.status, StatusCode::OK, "{:?}", safe.body);
    let passes = h
        .app
        .post("/v2/phone-validations", create_body(&project, &flow, "62618888"))
        .await;
    assert_eq!(passes.status, StatusCode::OK, "{:?}", passes.body);

    // Stats: the refused creates are counted, and the totals match the rows.
    let stats = h.app.get("/v2/phone-validations/stats?groupBy=prefix").await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.body);
    let rows: HashMap<String, Value> = stats
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["key"].as_str().unwrap().to_owned(), row.clone()))
        .collect();
    let attack_row = &rows["+507626"];
    let ours_written = h
        .app
        .count(&format!(
            "phone_validations WHERE client_id = '{}' AND phone LIKE '626%'",
            h.app.client
        ))
        .await;
    assert_eq!(attack_row["created"], ours_written, "{attack_row}");
    assert_eq!(
        attack_row["blocked"],
        answers[&StatusCode::FORBIDDEN] as i64 + 1,
        "{attack_row}"
    );
    assert_eq!(attack_row["validated"], 0);
    let legit_row = &rows["+507671"];
    assert_eq!(legit_row["validated"], legitimate as i64, "{legit_row}");
    assert_eq!(legit_row["created"], legitimate as i64);
    assert_eq!(legit_row["conversionRate"], 1.0);
    assert!(legit_row["medianSecondsToValidate"].as_f64().unwrap() > 0.5);

    // DELETE lifts it.
    let lifted = h
        .app
        .request(
            reqwest::Method::DELETE,
            "/v2/fraud-guard/blocks/%2B507626",
            Some(&h.app.token),
            None,
        )
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{:?}", lifted.body);
    let again = h
        .app
        .post("/v2/phone-validations", create_body(&project, &flow, "62617777"))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    let gone = h.app.get("/v2/fraud-guard/blocks").await;
    assert_eq!(gone.data(), &json!([]));
}

#[tokio::test]
async fn a_new_clients_first_sends_are_not_judged_before_the_grace_period() {
    let guard = GuardConfig {
        grace: Duration::from_secs(30),
        ..quick_guard()
    };
    let app = TestApp::spawn_guarded(guard, None).await;
    app.wait_for_broker().await;
    let h = Harness::with_app(app).await;
    h.sms_answers([], created("SMcold")).await;
    h.start_dispatcher().await;
    let (project, flow) = h.app.project_and_flow(json!({})).await;
    let ids: Vec<String> = futures_util::future::join_all((0..50).map(|n| {
        let (app, project, flow) = (&h.app, &project, &flow);
        async move { app.create_id(project, flow, &format!("6260{n:04}"), json!({})).await }
    }))
    .await;
    // Every code out (so each is a send the guard will judge), none typed.
    infra::eventually(Duration::from_secs(30), "the 50 codes at the provider", || async {
        (h.sms_requests().await.len() >= 50).then_some(())
    })
    .await;
    let another = h
        .app
        .post("/v2/phone-validations", create_body(&project, &flow, "62610051"))
        .await;
    assert_eq!(another.status, StatusCode::OK, "not blocked: {:?}", another.body);
    assert_eq!(h.app.count("fraud_blocks").await, 0);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 50);
}

#[tokio::test]
async fn a_block_set_through_one_instance_is_enforced_by_another_at_once() {
    let first = TestApp::spawn_guarded(quick_guard(), None).await;
    first.wait_for_broker().await;
    let second = TestApp::spawn_guarded(quick_guard(), Some((first.database_url.clone(), first.pool.clone()))).await;
    second.wait_for_broker().await;
    let (project, flow) = first.project_and_flow(json!({})).await;
    first.block("+507626", &flow, 0).await;
    // The second instance's request, with the first instance's client token.
    let refused = second
        .request(
            reqwest::Method::POST,
            "/v2/phone-validations",
            Some(&first.token),
            Some(create_body(&project, &flow, "62612345")),
        )
        .await;
    assert_eq!(
        (refused.status, refused.message()),
        (StatusCode::FORBIDDEN, "403:fraud_guard_blocked")
    );
    let listed = second
        .request(reqwest::Method::GET, "/v2/fraud-guard/blocks", Some(&first.token), None)
        .await;
    assert_eq!(listed.data()[0]["prefix"], "+507626");
    // A flow whose guard is off is not refused.
    let (open_project, open_flow) = first.project_and_flow(json!({"fraudGuard": "off"})).await;
    let unguarded = second
        .request(
            reqwest::Method::POST,
            "/v2/phone-validations",
            Some(&first.token),
            Some(create_body(&open_project, &open_flow, "62612345")),
        )
        .await;
    assert_eq!(unguarded.status, StatusCode::OK, "{:?}", unguarded.body);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_refused_creates_do_not_count() {
    let (app, project, flow) = TestApp::with_flow(json!({
        "resendCooldownSeconds": 0,
        "rateLimits": {"ipAddress": {"perMinute": 2, "perHour": 3}, "perDay": 4}
    }))
    .await;
    let with_ip = |phone: &str, ip: &str| {
        let mut body = create_body(&project, &flow, phone);
        body["ipAddress"] = json!(ip);
        body
    };
    for phone in ["62610001", "62610002"] {
        let ok = app.post("/v2/phone-validations", with_ip(phone, "203.0.113.7")).await;
        assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    }
    let limited = app
        .post("/v2/phone-validations", with_ip("62610003", "203.0.113.7"))
        .await;
    assert_eq!(
        (limited.status, limited.message()),
        (StatusCode::TOO_MANY_REQUESTS, "429:too_many_requests")
    );
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "the minute's end: {retry_after}");

    // Other addresses have their own limits; the refused create above took
    // nothing from the daily budget, which is the flow's: two more fit.
    for (phone, ip) in [("62610004", "198.51.100.1"), ("62610005", "198.51.100.2")] {
        let ok = app.post("/v2/phone-validations", with_ip(phone, ip)).await;
        assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    }
    let spent = app
        .post("/v2/phone-validations", with_ip("62610006", "198.51.100.3"))
        .await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", spent.body);
    let retry_after: u64 = spent.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "the UTC day's end: {retry_after}");
    assert_eq!(app.count("phone_validations").await, 4, "refused creates wrote nothing");
}

#[tokio::test]
async fn a_create_refused_after_taking_rate_limit_units_gives_them_back() {
    let (app, project, flow) = TestApp::with_flow(json!({
        "resendCooldownSeconds": 600,
        "rateLimits": {"perDay": 2}
    }))
    .await;
    let first = app
        .post("/v2/phone-validations", create_body(&project, &flow, "62610001"))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    for _ in 0..3 {
        // The same phone again: the cooldown refuses it; the budget is untouched.
        let cooling = app
            .post("/v2/phone-validations", create_body(&project, &flow, "62610001"))
            .await;
        assert_eq!(cooling.message(), "409:otp_recently_sent", "{:?}", cooling.body);
    }
    let second = app
        .post("/v2/phone-validations", create_body(&project, &flow, "62610002"))
        .await;
    assert_eq!(
        second.status,
        StatusCode::OK,
        "the budget still had one: {:?}",
        second.body
    );
    let third = app
        .post("/v2/phone-validations", create_body(&project, &flow, "62610003"))
        .await;
    assert_eq!(third.message(), "429:too_many_requests");
}

#[tokio::test]
async fn bad_fraud_guard_input_gets_the_envelope() {
    let (app, project, _) = TestApp::with_flow(json!({})).await;
    for (settings, field) in [
        (json!({"fraudGuard": "paranoid"}), "fraudGuard"),
        (json!({"allowedCountries": ["Panama"]}), "allowedCountries"),
        (json!({"rateLimits": {"perDay": 0}}), "perDay"),
        (json!({"rateLimits": {"ipAddress": {"perMinute": -1}}}), "perMinute"),
    ] {
        let answer = app
            .post(
                "/v2/project-flows",
                json!({"project": project, "type": "login", "phone": settings}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{settings}: {:?}", answer.body);
        assert!(
            answer.message().starts_with("400:invalid_"),
            "{settings}: {}",
            answer.message()
        );
        assert!(
            answer.message().contains(field) || field == "perMinute",
            "{settings}: {}",
            answer.message()
        );
    }
    let token = Some(app.token.as_str());
    let not_a_prefix = app
        .request(reqwest::Method::DELETE, "/v2/fraud-guard/blocks/507abc", token, None)
        .await;
    assert_eq!(not_a_prefix.message(), "400:invalid_prefix");
    let not_blocked = app
        .request(reqwest::Method::DELETE, "/v2/fraud-guard/blocks/%2B507626", token, None)
        .await;
    assert_eq!(not_blocked.message(), "404:fraud_guard_block_not_found");
    for (query, message) in [
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "400:invalid_from"),
        ("from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z", "400:invalid_to"),
        ("from=yesterday", "400:invalid_from"),
        ("groupBy=planet", "400:invalid_groupBy"),
    ] {
        let answer = app.get(&format!("/v2/phone-validations/stats?{query}")).await;
        assert_eq!(answer.message(), message, "{query}");
    }
    let missing = app.post("/v2/safe-list", json!({"phone": "62610001"})).await;
    assert_eq!(missing.status, StatusCode::CONFLICT, "{:?}", missing.body);
    let bad_phone = app
        .post("/v2/safe-list", json!({"countryCode": "+507", "phone": "12"}))
        .await;
    assert_eq!(bad_phone.message(), "400:invalid_phone");
    let geo = app
        .post(
            "/v2/project-flows",
            json!({"project": project, "type": "login", "phone": {"allowedCountries": ["CO"]}}),
        )
        .await;
    let geo_flow = geo.data()["_id"].as_str().unwrap();
    let refused = app
        .post("/v2/phone-validations", create_body(&project, geo_flow, "62610001"))
        .await;
    assert_eq!(refused.message(), "403:country_not_allowed");
}

#[tokio::test]
async fn stats_count_every_outcome_and_group_by_each_key() {
    let (app, project, flow) = TestApp::with_flow(json!({"resendCooldownSeconds": 0})).await;
    app.sent_validation(&project, &flow, "62610001", "123456").await;
    app.sent_validation(&project, &flow, "62720002", "123456").await;
    app.create_id(&project, &flow, "62720003", json!({})).await;
    let ok = app.validate("62610001", json!("123456")).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let by_prefix = app.get("/v2/phone-validations/stats?groupBy=prefix").await;
    assert_eq!(by_prefix.status, StatusCode::OK, "{:?}", by_prefix.body);
    let rows = by_prefix.data().as_array().unwrap();
    let row = |key: &str| rows.iter().find(|r| r["key"] == key).cloned().unwrap();
    assert_eq!(row("+507626")["created"], 1);
    assert_eq!(row("+507626")["sent"], 1);
    assert_eq!(row("+507626")["validated"], 1);
    assert_eq!(row("+507626")["conversionRate"], 1.0);
    assert_eq!(
        row("+507626")["medianSecondsToValidate"].as_f64().map(|s| s < 5.0),
        Some(true)
    );
    assert_eq!(row("+507626")["failed"], 0);
    assert_eq!(row("+507626")["blocked"], 0);
    assert_eq!(row("+507626")["delivered"], 0);
    // One sent, one not yet sent, none typed.
    let other = row("+507627");
    assert_eq!((other["created"].as_i64(), other["sent"].as_i64()), (Some(2), Some(1)));
    assert_eq!(
        (other["validated"].as_i64(), other["conversionRate"].as_f64()),
        (Some(0), Some(0.0))
    );
    assert_eq!(other["medianSecondsToValidate"], Value::Null);
    let by_country = app.get("/v2/phone-validations/stats?groupBy=country").await;
    let country = &by_country.data()[0];
    assert_eq!(country["key"], "PA");
    assert_eq!(country["created"], 3);
    // store_code records `sent` without a provider: only the status moved.
    assert_eq!(country["validated"], 1);
    let by_day = app.get("/v2/phone-validations/stats?groupBy=day").await;
    assert_eq!(by_day.data()[0]["created"], 3);
    let key = by_day.data()[0]["key"].as_str().unwrap().to_owned();
    assert_eq!(key, chrono::Utc::now().format("%Y-%m-%d").to_string());
    let by_channel = app.get("/v2/phone-validations/stats?groupBy=channel").await;
    assert_eq!(by_channel.data()[0]["key"], "sms");
    // A range before any of them: nothing.
    let before = app
        .get("/v2/phone-validations/stats?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
        .await;
    assert_eq!(before.data(), &json!([]));
}
