//! The flow's `rateLimits` (docs/contract.md §9) key on what an address is and
//! give back exactly what a refused create took, against the real API and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::fraud::rate_limits;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::domain::{IpLimits, RateLimits};
use shared::ObjectId;
use std::time::Duration;
use testkit::{infra, TestApp};

fn with_ip(project: &str, flow: &str, phone: &str, ip: &str) -> Value {
    let mut body = TestApp::create_body(project, flow, phone);
    body["ipAddress"] = json!(ip);
    body
}

#[tokio::test]
async fn one_address_written_many_ways_and_one_ipv6_64_share_one_limit() {
    let (app, project, flow) = TestApp::with_flow(json!({
        "resendCooldownSeconds": 0,
        "rateLimits": {"ipAddress": {"perMinute": 1}}
    }))
    .await;
    let mut phone = 62610000;
    let mut create = |ip: &'static str| {
        phone += 1;
        let body = with_ip(&project, &flow, &phone.to_string(), ip);
        let app = &app;
        async move { (ip, app.post("/v2/phone-validations", body).await) }
    };
    let (ip, first) = create("2001:db8::1").await;
    assert_eq!(first.status, StatusCode::OK, "{ip}: {:?}", first.body);
    // The same host, written otherwise or elsewhere in its /64.
    for ip in [
        "2001:DB8::1",
        "2001:db8:0::1",
        "2001:db8::abcd:1234",
        "2001:db8:0:0:ffff::9",
    ] {
        let (ip, limited) = create(ip).await;
        assert_eq!(limited.message(), "429:too_many_requests", "{ip}: {:?}", limited.body);
    }
    // The next /64 is another host.
    let (ip, other) = create("2001:db8:0:1::1").await;
    assert_eq!(other.status, StatusCode::OK, "{ip}: {:?}", other.body);
    // An IPv4-mapped address is its IPv4 address.
    let (ip, v4) = create("192.0.2.1").await;
    assert_eq!(v4.status, StatusCode::OK, "{ip}: {:?}", v4.body);
    let (ip, mapped) = create("::ffff:192.0.2.1").await;
    assert_eq!(mapped.message(), "429:too_many_requests", "{ip}: {:?}", mapped.body);
    assert_eq!(app.count("phone_validations").await, 3);
}

#[tokio::test]
async fn a_unit_given_back_returns_to_the_window_it_was_taken_from() {
    let app = TestApp::spawn().await;
    let flow = ObjectId::new();
    let limits = RateLimits {
        ip_address: Some(IpLimits {
            per_minute: Some(5),
            per_hour: None,
        }),
        per_day: None,
    };
    let taken = rate_limits::take(&app.pool, &flow, &limits, Some("192.0.2.1".parse().unwrap()))
        .await
        .unwrap()
        .expect("a limit applies");
    // Before the refused create gives its unit back, the next window has
    // begun (the create was slow; a minute turned) and counted one.
    sqlx::query(
        "INSERT INTO rate_limit_windows (project_flow_id, key, window_start, window_end, count, lim)
         SELECT project_flow_id, key, window_end, window_end + interval '1 minute', 1, lim
           FROM rate_limit_windows WHERE project_flow_id = $1",
    )
    .bind(&flow)
    .execute(&app.pool)
    .await
    .unwrap();
    rate_limits::give_back(&app.pool, taken).await;
    let counts: Vec<i32> =
        sqlx::query_scalar("SELECT count FROM rate_limit_windows WHERE project_flow_id = $1 ORDER BY window_start")
            .bind(&flow)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        counts,
        [0, 1],
        "the unit went back to its own window, the next one kept its count"
    );
}

#[tokio::test]
async fn a_refused_create_whose_client_hung_up_still_gives_its_units_back() {
    let (app, project, flow) = TestApp::with_flow(json!({"rateLimits": {"perDay": 5}})).await;
    // A block refuses the create after it took its unit of the daily budget.
    app.block("+507626", &flow, 0).await;
    // Hold the create at its statement (it reads the blocks) while the client hangs up.
    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE fraud_blocks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let hung_up = app
        .http
        .post(format!("{}/v2/phone-validations", app.base))
        .bearer_auth(&app.token)
        .json(&TestApp::create_body(&project, &flow, "62610001"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(hung_up.is_err_and(|e| e.is_timeout()), "the client gave up first");
    let taken: i32 = sqlx::query_scalar("SELECT count FROM rate_limit_windows WHERE key = 'day'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(taken, 1, "the create took its unit before it waited");
    // The server notices the hang-up on its next read of the connection;
    // only then does the statement go on (with the fix or without, this
    // wait changes nothing but whether a regression would show).
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.commit().await.unwrap();
    infra::eventually(Duration::from_secs(10), "the unit given back", || async {
        let count: i32 = sqlx::query_scalar("SELECT count FROM rate_limit_windows WHERE key = 'day'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (count == 0).then_some(())
    })
    .await;
    assert_eq!(app.count("phone_validations").await, 0);
}
