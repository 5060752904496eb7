//! The `project_flows` table: create (under a project of the client),
//! update (read for update, then written), read, list.

use super::list::{self, Filter, Listed};
use crate::envelope::Page;
use crate::error::ApiResult;
use crate::listing::Paging;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Statements;
use shared::domain::{FlowType, PhoneSettings};
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::sync::LazyLock;
use utoipa::ToSchema;

/// The ProjectFlow object.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectFlow {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[sqlx(rename = "client_id")]
    pub client: ObjectId,
    #[sqlx(rename = "project_id")]
    pub project: ObjectId,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: FlowType,
    #[schema(value_type = PhoneSettings)]
    pub phone: Json<PhoneSettings>,
    #[serde(serialize_with = "shared::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "shared::time::serialize")]
    pub updated_at: DateTime<Utc>,
}

const LISTED: Listed = Listed {
    table: "project_flows",
    columns: "id, client_id, project_id, type, phone, created_at, updated_at",
    filters: &["client_id", "project_id"],
};

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO project_flows (id, client_id, project_id, type, phone)
         SELECT $1, $2, id, $4, $5 FROM projects WHERE id = $3 AND client_id = $2
         RETURNING {}",
        LISTED.columns
    )
});

static LOCK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM project_flows WHERE id = $1 AND client_id = $2 FOR UPDATE",
        LISTED.columns
    )
});

static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE project_flows SET type = $2, phone = $3, updated_at = now() WHERE id = $1 RETURNING {}",
        LISTED.columns
    )
});

/// Creates a flow under `project`; `None` when the project is not the client's.
pub async fn insert(
    pool: &PgPool,
    client: &ObjectId,
    project: &ObjectId,
    kind: FlowType,
    settings: &PhoneSettings,
) -> Result<Option<ProjectFlow>, sqlx::Error> {
    sqlx::query_as(&INSERT)
        .bind(ObjectId::new())
        .bind(client)
        .bind(project)
        .bind(kind)
        .bind(Json(settings))
        .fetch_optional(pool)
        .await
}

/// The client's flow `id`, locked until the transaction ends.
pub async fn lock(
    conn: &mut PgConnection,
    id: &ObjectId,
    client: &ObjectId,
) -> Result<Option<ProjectFlow>, sqlx::Error> {
    sqlx::query_as(&LOCK).bind(id).bind(client).fetch_optional(conn).await
}

/// Writes a flow's type and settings (locked first with `lock`).
pub async fn update(
    conn: &mut PgConnection,
    id: &ObjectId,
    kind: FlowType,
    settings: &PhoneSettings,
) -> Result<ProjectFlow, sqlx::Error> {
    sqlx::query_as(&UPDATE)
        .bind(id)
        .bind(kind)
        .bind(Json(settings))
        .fetch_one(conn)
        .await
}

const SETTINGS_AND_APP: &str = "SELECT f.phone, p.name FROM project_flows f JOIN projects p ON p.id = f.project_id
  WHERE f.id = $1 AND f.client_id = $2";

/// The client's flow `id`: its phone settings and its project's name.
pub async fn settings_and_app(
    pool: &PgPool,
    id: &ObjectId,
    client: &ObjectId,
) -> Result<Option<(Json<PhoneSettings>, String)>, sqlx::Error> {
    sqlx::query_as(SETTINGS_AND_APP)
        .bind(id)
        .bind(client)
        .fetch_optional(pool)
        .await
}

pub async fn one(pool: &PgPool, id: &ObjectId, client: &ObjectId) -> ApiResult<Option<ProjectFlow>> {
    list::one(pool, &LISTED, id, client).await
}

/// A page of the client's flows, of one project if given.
pub async fn page(
    pool: &PgPool,
    client: &ObjectId,
    project: Option<ObjectId>,
    paging: Paging,
) -> ApiResult<Page<ProjectFlow>> {
    let filter = Filter::client(client)?.eq("project_id", project)?;
    list::page(pool, &LISTED, filter, paging).await
}

pub fn statements() -> Statements {
    let mut statements = list::statements("flows", &LISTED);
    statements.extend([
        ("flows.insert".into(), INSERT.clone()),
        ("flows.lock".into(), LOCK.clone()),
        ("flows.update".into(), UPDATE.clone()),
        ("flows.settings_and_app".into(), SETTINGS_AND_APP.into()),
    ]);
    statements
}
