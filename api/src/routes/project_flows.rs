//! Project flows and their phone settings (docs/contract.md §4.1).

pub mod content;

use super::projects::unknown_client;
use crate::auth::AuthClient;
use crate::envelope::{Envelope, List, Page, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ApiJson, ListQuery, RawPathId};
use crate::listing::{self, Filter};
use crate::AppState;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::{FlowType, PhoneSettings, PhoneSettingsPatch};
use shared::ObjectId;
use sqlx::types::Json;
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

const COLUMNS: &str = "id, client_id, project_id, type, phone, created_at, updated_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProjectFlow {
    /// The project's `_id`.
    #[schema(value_type = String, pattern = "^[0-9a-f]{24}$")]
    pub project: Option<String>,
    #[serde(rename = "type")]
    #[schema(value_type = FlowType)]
    pub kind: Option<FlowType>,
    pub phone: Option<PhoneSettingsPatch>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProjectFlow {
    #[serde(rename = "type")]
    pub kind: Option<FlowType>,
    /// Only the settings given change.
    pub phone: Option<PhoneSettingsPatch>,
}

fn settings(patch: Option<PhoneSettingsPatch>, base: PhoneSettings) -> ApiResult<PhoneSettings> {
    patch
        .unwrap_or_default()
        .apply(base)
        .map_err(|e| ApiError::invalid(e.0))
}

/// Create a project flow.
#[utoipa::path(post, path = "/v2/project-flows", tag = "project flows", operation_id = "createProjectFlow",
    request_body = CreateProjectFlow,
    responses(
        (status = 200, body = Success<ProjectFlow>, description = "The flow"),
        (status = 401, description = "`invalid_token`, or the token's client no longer exists"),
        (status = 404, description = "`project_not_found`"),
        (status = 409, description = "`MissingParameter`: `missing project`, `missing type`")),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    ApiJson(body): ApiJson<CreateProjectFlow>,
) -> ApiResult<Envelope<ProjectFlow>> {
    let mut missing = Vec::new();
    if body.project.is_none() {
        missing.push("project");
    }
    if body.kind.is_none() {
        missing.push("type");
    }
    let (Some(project), Some(kind)) = (body.project, body.kind) else {
        return Err(ApiError::Missing(missing));
    };
    let project = path_id(&project, "project")?;
    let settings = settings(body.phone, PhoneSettings::default())?;
    content::check_templates(&app.pool, &client, &project, &settings).await?;
    let flow: Option<ProjectFlow> = sqlx::query_as(&format!(
        "INSERT INTO project_flows (id, client_id, project_id, type, phone)
         SELECT $1, $2, id, $4, $5 FROM projects WHERE id = $3 AND client_id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(ObjectId::new())
    .bind(&client)
    .bind(&project)
    .bind(kind)
    .bind(Json(&settings))
    .fetch_optional(&app.pool)
    .await
    .map_err(unknown_client)?;
    flow.map(Envelope).ok_or_else(|| ApiError::not_found("project"))
}

/// Update a project flow's type or phone settings.
#[utoipa::path(put, path = "/v2/project-flows/{id}", tag = "project flows", operation_id = "updateProjectFlow",
    request_body = UpdateProjectFlow,
    params(("id" = String, Path, description = "Project flow id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<ProjectFlow>, description = "The flow, changed"),
        (status = 404, description = "`projectFlow_not_found`")),
    security(("bearer" = [])))]
pub async fn update(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
    ApiJson(body): ApiJson<UpdateProjectFlow>,
) -> ApiResult<Envelope<ProjectFlow>> {
    let id = path_id(&id, "projectFlow")?;
    let mut tx = app.pool.begin().await?;
    let current: Option<ProjectFlow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM project_flows WHERE id = $1 AND client_id = $2 FOR UPDATE"
    ))
    .bind(&id)
    .bind(&client)
    .fetch_optional(&mut *tx)
    .await?;
    let current = current.ok_or_else(|| ApiError::not_found("projectFlow"))?;
    let settings = settings(body.phone, current.phone.0)?;
    content::check_templates(&app.pool, &client, &current.project, &settings).await?;
    let flow: ProjectFlow = sqlx::query_as(&format!(
        "UPDATE project_flows SET type = $2, phone = $3, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(&id)
    .bind(body.kind.unwrap_or(current.kind))
    .bind(Json(&settings))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    app.flows.invalidate(&id).await;
    Ok(Envelope(flow))
}

/// Retrieve a project flow.
#[utoipa::path(get, path = "/v2/project-flows/{id}", tag = "project flows", operation_id = "getProjectFlow",
    params(("id" = String, Path, description = "Project flow id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<ProjectFlow>, description = "The flow"),
        (status = 404, description = "`projectFlow_not_found`")),
    security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<ProjectFlow>> {
    let id = path_id(&id, "projectFlow")?;
    let flow = listing::one(&app.pool, "project_flows", COLUMNS, &id, &client).await?;
    flow.map(Envelope).ok_or_else(|| ApiError::not_found("projectFlow"))
}

/// List the client's project flows, newest first (optionally of one project).
#[utoipa::path(get, path = "/v2/project-flows", tag = "project flows", operation_id = "listProjectFlows",
    params(
        ("page" = Option<i64>, Query, description = "1-based; a list reaches its first 10,000 rows (a page past them is empty)", minimum = 1, maximum = 10000),
        ("limit" = Option<i64>, Query, description = "Rows per page (default 10)", minimum = 1, maximum = 100),
        ("project" = Option<String>, Query, description = "Only this project's flows", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = List<ProjectFlow>, description = "A page of flows"),
        (status = 400, description = "`invalid_page`, `invalid_limit` or `invalid_project`")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<ProjectFlow>> {
    let query = ListQuery::parse(query.as_deref())?;
    let paging = query.paging()?;
    let filter = Filter::client(&client)?.eq("project_id", query.id("project")?)?;
    listing::page(&app.pool, "project_flows", COLUMNS, filter, paging).await
}
