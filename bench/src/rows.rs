//! Rows the benches arrange straight in PostgreSQL, where going through the
//! API would measure the API instead: a project and its flow, and validated
//! records whose events the webhook benches publish.

use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::ObjectId;
use sqlx::PgPool;

/// A project of `client` and a login flow in it with the `phone` settings;
/// their ids.
pub async fn project_and_flow(
    pool: &PgPool,
    client: &ObjectId,
    phone: serde_json::Value,
) -> anyhow::Result<(ObjectId, ObjectId)> {
    let (project, flow) = (ObjectId::new(), ObjectId::new());
    sqlx::query("INSERT INTO projects (id, client_id, name) VALUES ($1, $2, 'bench')")
        .bind(&project)
        .bind(client)
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO project_flows (id, client_id, project_id, type, phone) VALUES ($1, $2, $3, 'login', $4)")
        .bind(&flow)
        .bind(client)
        .bind(&project)
        .bind(sqlx::types::Json(phone))
        .execute(pool)
        .await?;
    Ok((project, flow))
}

/// `count` validated records in `flow` (Panamanian numbers, one each).
pub async fn validated(
    pool: &PgPool,
    client: &ObjectId,
    project: &ObjectId,
    flow: &ObjectId,
    count: usize,
) -> anyhow::Result<Vec<PhoneValidation>> {
    let ids: Vec<String> = (0..count).map(|_| ObjectId::new().as_str().to_owned()).collect();
    let rows = sqlx::query_as(&format!(
        "INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, status, country_code, phone,
                phone_gateway, validation_method, type, otp_length, expires_at, max_attempts, validated_at)
         SELECT id, $2, $3, $4, 'validated', '+507', '6' || lpad(n::text, 7, '0'), 'sms', 'verificationCode',
                'login', 6, now() + interval '10 minutes', 3, now()
           FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n)
      RETURNING {COLUMNS}"
    ))
    .bind(&ids)
    .bind(client)
    .bind(project)
    .bind(flow)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
