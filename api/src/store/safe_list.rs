//! The fraud guard's safe list (`safe_list`): numbers of a client the
//! guard never blocks. The blocks themselves are `crate::fraud::blocks`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Statements;
use shared::domain::PhoneNumber;
use shared::ObjectId;
use sqlx::PgPool;
use utoipa::ToSchema;

/// A number on the client's safe list.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafeListEntry {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub country_code: String,
    /// National number, canonical (trunk prefix removed).
    pub phone: String,
    #[serde(serialize_with = "shared::time::serialize")]
    pub created_at: DateTime<Utc>,
}

const ADD: &str = "INSERT INTO safe_list (id, client_id, country_code, phone) VALUES ($1, $2, $3, $4)
         ON CONFLICT (client_id, country_code, phone) DO UPDATE SET phone = excluded.phone
         RETURNING id, country_code, phone, created_at";

const LIST: &str = "SELECT id, country_code, phone, created_at FROM safe_list WHERE client_id = $1
          ORDER BY created_at DESC, id DESC LIMIT 1000";

const REMOVE: &str =
    "DELETE FROM safe_list WHERE id = $1 AND client_id = $2 RETURNING id, country_code, phone, created_at";

/// Adds `phone` (an entry already there is answered as it is).
pub async fn add(pool: &PgPool, client: &ObjectId, phone: &PhoneNumber) -> Result<SafeListEntry, sqlx::Error> {
    sqlx::query_as(ADD)
        .bind(ObjectId::new())
        .bind(client)
        .bind(phone.country().to_string())
        .bind(phone.national())
        .fetch_one(pool)
        .await
}

/// The client's entries, newest first (at most 1,000).
pub async fn list(pool: &PgPool, client: &ObjectId) -> Result<Vec<SafeListEntry>, sqlx::Error> {
    sqlx::query_as(LIST).bind(client).fetch_all(pool).await
}

/// Removes the client's entry `id`; `None` when there is none.
pub async fn remove(pool: &PgPool, client: &ObjectId, id: &ObjectId) -> Result<Option<SafeListEntry>, sqlx::Error> {
    sqlx::query_as(REMOVE).bind(id).bind(client).fetch_optional(pool).await
}

pub fn statements() -> Statements {
    [
        ("safe_list.add", ADD),
        ("safe_list.list", LIST),
        ("safe_list.remove", REMOVE),
    ]
    .map(|(name, sql)| (name.into(), sql.into()))
    .into()
}
