//! The `projects` table: create, read, list.

use super::list::{self, Filter, Listed};
use crate::envelope::Page;
use crate::error::ApiResult;
use crate::listing::Paging;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Statements;
use shared::ObjectId;
use sqlx::PgPool;
use std::sync::LazyLock;
use utoipa::ToSchema;

/// The Project object.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[sqlx(rename = "client_id")]
    pub client: ObjectId,
    pub name: String,
    pub demo: bool,
    #[serde(serialize_with = "shared::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "shared::time::serialize")]
    pub updated_at: DateTime<Utc>,
}

const LISTED: Listed = Listed {
    table: "projects",
    columns: "id, client_id, name, demo, created_at, updated_at",
    filters: &["client_id"],
};

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO projects (id, client_id, name, demo) VALUES ($1, $2, $3, $4) RETURNING {}",
        LISTED.columns
    )
});

/// Creates a project of `client` (a client that no longer exists is the
/// foreign key's error).
pub async fn insert(pool: &PgPool, client: &ObjectId, name: &str, demo: bool) -> Result<Project, sqlx::Error> {
    sqlx::query_as(&INSERT)
        .bind(ObjectId::new())
        .bind(client)
        .bind(name)
        .bind(demo)
        .fetch_one(pool)
        .await
}

const NAME: &str = "SELECT name FROM projects WHERE id = $1 AND client_id = $2";

/// The name of the client's project `id` (a template's `{app}`).
pub async fn name(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(NAME)
        .bind(id)
        .bind(client)
        .fetch_optional(pool)
        .await
}

pub async fn one(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> ApiResult<Option<Project>> {
    list::one(pool, &LISTED, id, client).await
}

pub async fn page(pool: &PgPool, client: &ObjectId, paging: Paging) -> ApiResult<Page<Project>> {
    list::page(pool, &LISTED, Filter::client(client)?, paging).await
}

pub fn statements() -> Statements {
    let mut statements = list::statements("projects", &LISTED);
    statements.push(("projects.insert".into(), INSERT.clone()));
    statements.push(("projects.name".into(), NAME.into()));
    statements
}
