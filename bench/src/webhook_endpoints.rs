//! The webhook bench's endpoint mode (`--endpoints N`, docs/contract.md §13):
//! a client with N endpoints, each a fast receiver, and optionally one
//! black-holed endpoint subscribed to everything; its validated records,
//! whose events fan out to every endpoint. The flow has no `webhookUrl`, so
//! the worker's time goes to fan-out and the endpoints' deliveries.

use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::ObjectId;
use sqlx::PgPool;
use testkit::webhook_endpoints::Endpoint;

const SECRET: &str = "whsec_dGVzdA==";

/// A client with one endpoint per URL in `urls` (and one at `black_hole`),
/// a project and a flow without a `webhookUrl`, and `count` validated
/// records under it; the client's id and the records.
pub async fn validations(
    pool: &PgPool,
    urls: &[String],
    black_hole: Option<&str>,
    count: usize,
) -> anyhow::Result<(ObjectId, Vec<PhoneValidation>)> {
    let client = testkit::create_client(pool, "bench").await;
    let (project, flow) = (ObjectId::new(), ObjectId::new());
    sqlx::query("INSERT INTO projects (id, client_id, name) VALUES ($1, $2, 'bench')")
        .bind(&project)
        .bind(&client)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO project_flows (id, client_id, project_id, type, phone) VALUES ($1, $2, $3, 'login', '{}')",
    )
    .bind(&flow)
    .bind(&client)
    .bind(&project)
    .execute(pool)
    .await?;
    for url in urls.iter().map(String::as_str).chain(black_hole) {
        Endpoint::new(&client, url, SECRET).insert(pool).await;
    }
    let ids: Vec<String> = (0..count).map(|_| ObjectId::new().as_str().to_owned()).collect();
    let rows: Vec<PhoneValidation> = sqlx::query_as(&format!(
        "INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, status, country_code, phone,
                phone_gateway, validation_method, type, otp_length, expires_at, max_attempts, validated_at)
         SELECT id, $2, $3, $4, 'validated', '+507', '6' || lpad(n::text, 7, '0'), 'sms', 'verificationCode',
                'login', 6, now() + interval '10 minutes', 3, now()
           FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)
      RETURNING {COLUMNS}"
    ))
    .bind(&ids)
    .bind(&client)
    .bind(&project)
    .bind(&flow)
    .fetch_all(pool)
    .await?;
    Ok((client, rows))
}

/// After a run: the client's endpoints disabled, so what is left of their
/// deliveries (the black hole's) does not reach into the next run.
pub async fn retire(pool: &PgPool, client: &ObjectId) -> anyhow::Result<()> {
    sqlx::query("UPDATE webhook_endpoints SET disabled = true, disabled_reason = 'manual' WHERE client_id = $1")
        .bind(client)
        .execute(pool)
        .await?;
    Ok(())
}
