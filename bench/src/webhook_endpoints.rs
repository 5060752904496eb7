//! The webhook bench's endpoint mode (`--endpoints N`, docs/contract.md §13):
//! a client with N endpoints, each a fast receiver, and optionally one
//! black-holed endpoint subscribed to everything; its validated records,
//! whose events fan out to every endpoint. The flow has no `webhookUrl`, so
//! the worker's time goes to fan-out and the endpoints' deliveries.

use shared::domain::PhoneValidation;
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
    let (project, flow) = crate::rows::project_and_flow(pool, &client, serde_json::json!({})).await?;
    for url in urls.iter().map(String::as_str).chain(black_hole) {
        Endpoint::new(&client, url, SECRET).insert(pool).await;
    }
    let rows = crate::rows::validated(pool, &client, &project, &flow, count).await?;
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
