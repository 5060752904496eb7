//! The flow a create runs under, cached for a second per instance.

use super::request::NewValidation;
use crate::error::{ApiError, ApiResult};
use shared::domain::PhoneSettings;
use shared::ObjectId;
use sqlx::types::Json;
use std::sync::Arc;

const LOAD_FLOW: &str = "SELECT p.name, f.phone FROM projects p
           LEFT JOIN project_flows f ON f.id = $2 AND f.project_id = p.id AND f.client_id = p.client_id
          WHERE p.id = $1 AND p.client_id = $3";

/// Flows read recently, by flow id. A create needs its flow's settings, which
/// rarely change: keeping them for a second saves a round trip per create in a
/// burst. A flow updated through this instance is dropped at once; through
/// another, it is seen within the second.
pub type FlowCache = moka::future::Cache<ObjectId, Arc<CachedFlow>>;

/// A flow with the owners it was read for.
pub struct CachedFlow {
    client: ObjectId,
    project: ObjectId,
    pub flow: Flow,
}

pub fn new_cache() -> FlowCache {
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(std::time::Duration::from_secs(1))
        .build()
}

pub async fn cached(
    flows: &FlowCache,
    pool: &sqlx::PgPool,
    client: &ObjectId,
    new: &NewValidation,
) -> ApiResult<Arc<CachedFlow>> {
    if let Some(cached) = flows.get(&new.flow).await {
        if cached.client == *client && cached.project == new.project {
            return Ok(cached);
        }
    }
    let flow = load_flow(pool, client, new).await?;
    let cached = Arc::new(CachedFlow {
        client: client.clone(),
        project: new.project.clone(),
        flow,
    });
    flows.insert(new.flow.clone(), cached.clone()).await;
    Ok(cached)
}

/// The flow a create runs under.
#[derive(sqlx::FromRow)]
pub struct Flow {
    /// The project's name: the title of the message.
    pub project_name: String,
    pub settings: Json<PhoneSettings>,
}

/// The project and flow, both the client's and the flow the project's.
async fn load_flow(pool: &sqlx::PgPool, client: &ObjectId, new: &NewValidation) -> ApiResult<Flow> {
    let row: Option<(String, Option<Json<PhoneSettings>>)> = sqlx::query_as(LOAD_FLOW)
        .bind(&new.project)
        .bind(&new.flow)
        .bind(client)
        .fetch_optional(pool)
        .await?;
    match row {
        None => Err(ApiError::not_found("project")),
        Some((_, None)) => Err(ApiError::not_found("projectFlow")),
        Some((project_name, Some(settings))) => Ok(Flow { project_name, settings }),
    }
}

/// The flow's read, for the schema check.
pub fn statements() -> shared::db::Statements {
    [("flow_cache.load", LOAD_FLOW)]
        .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
        .into()
}
