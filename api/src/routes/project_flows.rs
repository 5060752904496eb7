//! Project flows and their phone settings (docs/contract.md §4.1).

pub mod content;

use super::projects::unknown_client;
use crate::auth::AuthClient;
use crate::envelope::{Envelope, List, Page, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ApiJson, RawPathId};
use crate::listing::{ListQuery, PagingParams};
use crate::state::AppState;
use crate::store::flows::{self, ProjectFlow};
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use shared::domain::{FlowType, PhoneSettings, PhoneSettingsPatch};
use utoipa::ToSchema;

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
    let flow = flows::insert(&app.pool, &client, &project, kind, &settings)
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
    let current = flows::lock(&mut tx, &id, &client).await?;
    let current = current.ok_or_else(|| ApiError::not_found("projectFlow"))?;
    let settings = settings(body.phone, current.phone.0)?;
    content::check_templates(&app.pool, &client, &current.project, &settings).await?;
    let flow = flows::update(&mut tx, &id, body.kind.unwrap_or(current.kind), &settings).await?;
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
    let flow = flows::one(&app.pool, &id, &client).await?;
    flow.map(Envelope).ok_or_else(|| ApiError::not_found("projectFlow"))
}

/// List the client's project flows, newest first (optionally of one project).
#[utoipa::path(get, path = "/v2/project-flows", tag = "project flows", operation_id = "listProjectFlows",
    params(
        PagingParams,
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
    flows::page(&app.pool, &client, query.id("project")?, paging).await
}
