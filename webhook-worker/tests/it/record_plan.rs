//! The attempt record's plan (`webhooks.endpoint_record`): each claimed
//! delivery is found by its key, whatever the statistics say. A plan through
//! the due index reads every pending row at each record, which beside a dead
//! endpoint's backlog made each record read 10,000 rows.

use shared::ObjectId;
use sqlx::{Connection, PgConnection};
use testkit::webhook_endpoints::Endpoint;

#[tokio::test]
async fn a_record_finds_deliveries_by_their_key_beside_a_backlog() {
    let (url, pool) = testkit::database().await;
    let client = testkit::create_client(&pool, "plan").await;
    let endpoint = Endpoint::new(&client, "https://8.8.8.8/hooks", "whsec_dGVzdA==")
        .insert(&pool)
        .await;
    // A backlog of pending deliveries, never analyzed (as in a fresh
    // database, or a burst since the last ANALYZE).
    let ids: Vec<String> = (0..5_000).map(|_| ObjectId::new().as_str().to_owned()).collect();
    sqlx::query(
        "INSERT INTO webhook_messages (event_id, client_id, event_type, occurred_at, payload)
         SELECT id, $2, 'phone_validation_validated', now(), '{}' FROM unnest($1::text[]) AS id",
    )
    .bind(&ids)
    .bind(&client)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_endpoint_deliveries (event_id, endpoint_id, client_id, status, next_attempt_at)
         SELECT id, $2, $3, 'pending', now() FROM unnest($1::text[]) AS id",
    )
    .bind(&ids)
    .bind(&endpoint)
    .bind(&client)
    .execute(&pool)
    .await
    .unwrap();

    let statements = webhook_worker::store::statements();
    let record = statements
        .iter()
        .find(|(name, _)| name == "webhooks.endpoint_record")
        .map(|(_, sql)| sql.clone())
        .expect("the record statement is listed");
    // The endpoint pool's setting: the plan a cached statement would keep.
    let mut connection = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("PREPARE record AS {record}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE record('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', 3600)",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("webhook_endpoint_deliveries_pkey"),
        "the deliveries are found by their key:\n{plan}"
    );
    assert!(
        !plan.contains("endpoint_due_idx"),
        "the record never walks the due index:\n{plan}"
    );
}
