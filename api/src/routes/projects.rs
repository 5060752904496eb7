//! Projects: a client's containers for flows.

use crate::auth::AuthClient;
use crate::envelope::{Envelope, List, Page, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ApiJson, RawPathId};
use crate::listing::{ListQuery, PagingParams};
use crate::state::AppState;
use crate::store::projects::{self, Project};
use axum::extract::{RawQuery, State};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProject {
    /// 1 to 200 characters, not only spaces.
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    pub demo: Option<bool>,
}

/// Create a project.
#[utoipa::path(post, path = "/v2/projects", tag = "projects", operation_id = "createProject",
    request_body = CreateProject,
    responses(
        (status = 200, body = Success<Project>, description = "The project"),
        (status = 401, description = "`invalid_token`, or the token's client no longer exists"),
        (status = 409, description = "`MissingParameter`: `missing name`")),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    ApiJson(body): ApiJson<CreateProject>,
) -> ApiResult<Envelope<Project>> {
    let name = body
        .name
        .map(|n| n.trim().to_owned())
        .ok_or(ApiError::Missing(vec!["name"]))?;
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name"));
    }
    let project = projects::insert(&app.pool, &client, &name, body.demo.unwrap_or(false))
        .await
        .map_err(unknown_client)?;
    Ok(Envelope(project))
}

/// A valid token whose client no longer exists cannot create anything.
pub fn unknown_client(error: sqlx::Error) -> ApiError {
    match &error {
        sqlx::Error::Database(db) if db.constraint().is_some_and(|c| c.ends_with("client_id_fkey")) => {
            ApiError::unauthorized()
        }
        _ => ApiError::Database(error),
    }
}

/// Retrieve a project.
#[utoipa::path(get, path = "/v2/projects/{id}", tag = "projects", operation_id = "getProject",
    params(("id" = String, Path, description = "Project id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<Project>, description = "The project"),
        (status = 404, description = "`project_not_found`")),
    security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<Project>> {
    let id = path_id(&id, "project")?;
    let project = projects::one(&app.pool, &id, &client).await?;
    project.map(Envelope).ok_or_else(|| ApiError::not_found("project"))
}

/// List the client's projects, newest first.
#[utoipa::path(get, path = "/v2/projects", tag = "projects", operation_id = "listProjects",
    params(PagingParams),
    responses(
        (status = 200, body = List<Project>, description = "A page of projects"),
        (status = 400, description = "`invalid_page` or `invalid_limit`")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<Project>> {
    let paging = ListQuery::parse(query.as_deref())?.paging()?;
    projects::page(&app.pool, &client, paging).await
}
