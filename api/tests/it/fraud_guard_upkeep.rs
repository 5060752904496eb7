//! The fraud guard's upkeep (`api::fraud::judge::tick`) against the real
//! PostgreSQL: how soon it judges sends, and what folding leaves behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::fraud::{judge, GuardConfig};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::TestApp;

/// Appends `sent` never-validated sends by Twilio to `+507626`, created at
/// `at` (epoch seconds), as the trigger would.
async fn sends_at(app: &TestApp, flow: &str, at: f64, sent: i64) {
    sqlx::query(
        "INSERT INTO validation_stats_deltas (client_id, project_id, project_flow_id, at, region, country_code,
                prefix, channel, provider, created, sent)
         SELECT $1, project_id, id, to_timestamp($3), 'PA', '+507', '+507626', 'sms', 'twilio', $4, $4
           FROM project_flows WHERE id = $2",
    )
    .bind(&app.client)
    .bind(flow)
    .bind(at)
    .bind(sent)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn sends_are_judged_one_second_after_the_grace_period_not_five() {
    let (app, _project, flow) = TestApp::with_flow(json!({})).await;
    // 40 never-typed sends in the first second of a 5-second span, judged
    // with a grace period that ends 2 s after that second began: the whole
    // second is older than the grace period, the span is not.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let second = (now / 5.0).floor() * 5.0 - 10.0;
    sends_at(&app, &flow, second, 40).await;
    let config = GuardConfig {
        grace: Duration::from_secs_f64(now - second - 2.0),
        ..GuardConfig::default()
    };
    // The tick must run within a second or two of `now` (another instance's
    // upkeep, with the default 120 s grace, may hold the lock for a moment).
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut blocked = 0;
    while blocked == 0 && Instant::now() < deadline {
        blocked = judge::tick(&app.pool, &config).await.unwrap().len();
    }
    let blocks: Vec<(String, i64)> = sqlx::query_as("SELECT prefix, sent FROM fraud_blocks")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        blocks,
        [("+507626".to_owned(), 40)],
        "blocked once the second was past the grace period"
    );
}

#[tokio::test]
async fn the_upkeep_vacuums_the_deltas_it_folded_away() {
    let (app, project, flow) = TestApp::with_flow(json!({})).await;
    for phone in ["62610001", "62610002", "62610003"] {
        app.create_validation(&project, &flow, phone).await;
    }
    // Autovacuum is off here (and may be, or lag, anywhere): only the
    // upkeep's own VACUUM counts in `vacuum_count`.
    testkit::infra::eventually(Duration::from_secs(10), "the deltas folded and vacuumed", || async {
        let (left, vacuums): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM validation_stats_deltas), vacuum_count
               FROM pg_stat_user_tables WHERE relname = 'validation_stats_deltas'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (left == 0 && vacuums > 0).then_some(())
    })
    .await;
}
