//! Webhook endpoints (docs/contract.md §13): a client's several URLs, each
//! with its event types, project, rate limit and its own signing secret
//! (answered on create and rotation only, stored sealed with the endpoint's
//! id as associated data). A URL is checked against the SSRF rules the
//! webhook worker delivers by.

use super::projects::unknown_client;
use crate::auth::AuthClient;
use crate::envelope::{Envelope, List, Page, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ApiJson, RawPathId};
use crate::listing::{ListQuery, PagingParams};
use crate::state::AppState;
use crate::store::webhook_endpoints::{self as store, Settings, WebhookEndpoint};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use shared::domain::WebhookEventType;
use shared::ObjectId;
use std::time::Duration;
use utoipa::ToSchema;

/// The longest URL, description, and rate limit accepted.
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;
const MAX_RATE: i32 = 10_000;
/// How long resolving a URL's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookEndpoint {
    /// Absolute http(s) URL, at most 2048 characters, whose host is public
    /// (unless the server sets `WEBHOOK_ALLOW_PRIVATE`).
    #[schema(value_type = String, max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub url: Option<String>,
    /// The types it receives; absent or `null`: every type, those added later too.
    #[schema(schema_with = crate::webhook_events::nullable_names_schema)]
    pub event_types: Option<Vec<String>>,
    /// Only this project's events (the client's project).
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{24}$")]
    pub project: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Deliveries per second across every worker (the excess waits).
    #[schema(minimum = 1, maximum = 10000)]
    pub rate_limit_per_second: Option<i32>,
    /// Created disabled (`disabledReason: "manual"`).
    pub disabled: Option<bool>,
}

/// Absent: unchanged; `null`: removed (every type, any project, no
/// description, no rate limit); a value: set.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWebhookEndpoint {
    #[schema(value_type = Option<String>, max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub url: Option<String>,
    /// `null`: every type, those added later too.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = crate::webhook_events::nullable_names_schema)]
    pub event_types: Option<Option<Vec<String>>>,
    /// `null`: every project's events.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^[0-9a-f]{24}$")]
    pub project: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 10000)]
    pub rate_limit_per_second: Option<Option<i32>>,
    /// `true`: disabled (`disabledReason: "manual"`), its pending deliveries
    /// failed (a recovery sends them again); `false`: enabled again.
    pub disabled: Option<bool>,
}

/// An endpoint as created: with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookEndpoint {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_` + base64 of 24 random bytes: the Standard Webhooks signing key.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+=*$")]
    pub secret: String,
}

/// A rotation's new secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+=*$")]
    pub secret: String,
}

/// `whsec_` + base64 of 24 random bytes, as `otpctl` makes clients' secrets.
fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The URL, if §8's rules allow delivering to it: an http(s) URL whose
/// host is a public address, or a name that resolves to at least one (the
/// worker connects only to those); a name that does not resolve is refused
/// too. `WEBHOOK_ALLOW_PRIVATE` lifts both checks but the scheme's.
async fn check_url(raw: &str, allow_private: bool) -> ApiResult<String> {
    let invalid = || ApiError::invalid("url");
    if raw.chars().count() > MAX_URL {
        return Err(invalid());
    }
    let url = url::Url::parse(raw).map_err(|_| invalid())?;
    shared::ssrf::check_url(&url, allow_private).map_err(|_| invalid())?;
    if let (Some(url::Host::Domain(host)), false) = (url.host(), allow_private) {
        let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, shared::ssrf::resolve_public(host)).await;
        if !matches!(resolved, Ok(Ok(_))) {
            return Err(invalid());
        }
    }
    Ok(url.to_string())
}

/// The types named, in the catalogue's order, once each.
fn event_types(names: Vec<String>) -> ApiResult<Vec<String>> {
    let invalid = || ApiError::invalid("eventTypes");
    let kinds: Vec<WebhookEventType> = names
        .iter()
        .map(|name| WebhookEventType::parse(name).ok_or_else(invalid))
        .collect::<ApiResult<_>>()?;
    if kinds.is_empty() {
        return Err(invalid());
    }
    Ok(WebhookEventType::ALL
        .iter()
        .filter(|kind| kinds.contains(kind))
        .map(|kind| kind.as_str().to_owned())
        .collect())
}

fn description(value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(text) if text.chars().count() > MAX_DESCRIPTION => Err(ApiError::invalid("description")),
        other => Ok(other),
    }
}

fn rate(value: Option<i32>) -> ApiResult<Option<i32>> {
    match value {
        Some(n) if !(1..=MAX_RATE).contains(&n) => Err(ApiError::invalid("rateLimitPerSecond")),
        other => Ok(other),
    }
}

/// Create a webhook endpoint: 201, with its secret, shown this once.
#[utoipa::path(post, path = "/v2/webhook-endpoints", tag = "webhook endpoints", operation_id = "createWebhookEndpoint",
    request_body = CreateWebhookEndpoint,
    responses(
        (status = 201, body = Success<CreatedWebhookEndpoint>, description = "The endpoint, with its secret"),
        (status = 400, description = "`invalid_url` (not http(s), or a host that is not public or does not resolve), `invalid_eventTypes`, `invalid_description`, `invalid_rateLimitPerSecond`, `invalid_disabled`, `invalid_json`"),
        (status = 401, description = "`invalid_token`, or the token's client no longer exists"),
        (status = 404, description = "`project_not_found`"),
        (status = 409, description = "`MissingParameter`: `missing url`")),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    ApiJson(body): ApiJson<CreateWebhookEndpoint>,
) -> ApiResult<(StatusCode, Envelope<CreatedWebhookEndpoint>)> {
    let raw_url = body.url.ok_or(ApiError::Missing(vec!["url"]))?;
    let event_types = body.event_types.map(event_types).transpose()?;
    let description = description(body.description)?;
    let rate_limit_per_second = rate(body.rate_limit_per_second)?;
    let project = body.project.map(|raw| path_id(&raw, "project")).transpose()?;
    let url = check_url(&raw_url, app.webhooks.allow_private).await?;
    let settings = Settings {
        url,
        description,
        event_types,
        project,
        rate_limit_per_second,
        disabled: body.disabled.unwrap_or(false),
    };
    let id = ObjectId::new();
    let secret = new_secret();
    let sealed = app
        .webhooks
        .keys
        .seal(id.as_str(), &secret)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("while sealing a secret: {e}")))?;
    let row = store::insert(&app.pool, &id, &client, &settings, &sealed)
        .await
        .map_err(unknown_client)?;
    let endpoint = row.ok_or_else(|| ApiError::not_found("project"))?.into();
    // 201, as docs/contract.md §13 says (the older resources answer 200).
    Ok((
        StatusCode::CREATED,
        Envelope(CreatedWebhookEndpoint { endpoint, secret }),
    ))
}

/// List the client's webhook endpoints, newest first.
#[utoipa::path(get, path = "/v2/webhook-endpoints", tag = "webhook endpoints", operation_id = "listWebhookEndpoints",
    params(PagingParams),
    responses(
        (status = 200, body = List<WebhookEndpoint>, description = "A page of endpoints"),
        (status = 400, description = "`invalid_page` or `invalid_limit`")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<WebhookEndpoint>> {
    let paging = ListQuery::parse(query.as_deref())?.paging()?;
    store::page(&app.pool, &client, paging).await
}

/// Retrieve a webhook endpoint (never its secret).
#[utoipa::path(get, path = "/v2/webhook-endpoints/{id}", tag = "webhook endpoints", operation_id = "getWebhookEndpoint",
    params(("id" = String, Path, description = "Webhook endpoint id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<WebhookEndpoint>, description = "The endpoint"),
        (status = 404, description = "`webhookEndpoint_not_found`")),
    security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<WebhookEndpoint>> {
    let id = path_id(&id, "webhookEndpoint")?;
    found(store::one(&app.pool, &id, &client).await?)
}

/// Change a webhook endpoint: only the fields given change.
#[utoipa::path(patch, path = "/v2/webhook-endpoints/{id}", tag = "webhook endpoints", operation_id = "updateWebhookEndpoint",
    request_body = UpdateWebhookEndpoint,
    params(("id" = String, Path, description = "Webhook endpoint id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<WebhookEndpoint>, description = "The endpoint, changed"),
        (status = 400, description = "`invalid_url`, `invalid_eventTypes`, `invalid_project` (not a project of the client), `invalid_description`, `invalid_rateLimitPerSecond`, `invalid_disabled`, `invalid_json`"),
        (status = 404, description = "`webhookEndpoint_not_found`")),
    security(("bearer" = [])))]
pub async fn update(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
    ApiJson(body): ApiJson<UpdateWebhookEndpoint>,
) -> ApiResult<Envelope<WebhookEndpoint>> {
    let id = path_id(&id, "webhookEndpoint")?;
    let event_types = body
        .event_types
        .map(|kinds| kinds.map(event_types).transpose())
        .transpose()?;
    let description = body.description.map(description).transpose()?;
    let rate_limit = body.rate_limit_per_second.map(rate).transpose()?;
    // The endpoint is the resource changed, and it exists: a project it
    // cannot move to is a bad field (400), not a missing resource (404).
    let project = body
        .project
        .map(|raw| {
            raw.map(|raw| ObjectId::parse(&raw).map_err(|_| ApiError::invalid("project")))
                .transpose()
        })
        .transpose()?;
    let url = match body.url {
        Some(raw) => Some(check_url(&raw, app.webhooks.allow_private).await?),
        None => None,
    };
    let mut tx = app.pool.begin().await?;
    let current = store::lock(&mut tx, &id, &client).await?;
    let current = current.ok_or_else(not_found)?;
    if let Some(Some(project)) = &project {
        if !store::owns_project(&mut tx, project, &client).await? {
            return Err(ApiError::invalid("project"));
        }
    }
    let mut settings = Settings::from(&current);
    if let Some(url) = url {
        settings.url = url;
    }
    if let Some(event_types) = event_types {
        settings.event_types = event_types;
    }
    if let Some(project) = project {
        settings.project = project;
    }
    if let Some(description) = description {
        settings.description = description;
    }
    if let Some(rate_limit) = rate_limit {
        settings.rate_limit_per_second = rate_limit;
    }
    if let Some(disabled) = body.disabled {
        settings.disabled = disabled;
    }
    let row = store::update(&mut tx, &id, &client, &settings, body.disabled == Some(true)).await?;
    tx.commit().await?;
    Ok(Envelope(row.into()))
}

/// Delete a webhook endpoint (its pending deliveries with it).
#[utoipa::path(delete, path = "/v2/webhook-endpoints/{id}", tag = "webhook endpoints", operation_id = "deleteWebhookEndpoint",
    params(("id" = String, Path, description = "Webhook endpoint id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<WebhookEndpoint>, description = "The endpoint deleted"),
        (status = 404, description = "`webhookEndpoint_not_found`")),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<WebhookEndpoint>> {
    let id = path_id(&id, "webhookEndpoint")?;
    found(store::delete(&app.pool, &id, &client).await?)
}

/// Give an endpoint a new secret; the previous one keeps signing beside it
/// for `WEBHOOK_SECRET_OVERLAP_SECONDS` (default 24 hours).
#[utoipa::path(post, path = "/v2/webhook-endpoints/{id}/rotate-secret", tag = "webhook endpoints", operation_id = "rotateWebhookEndpointSecret",
    params(("id" = String, Path, description = "Webhook endpoint id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<RotatedSecret>, description = "The new secret, shown this once"),
        (status = 404, description = "`webhookEndpoint_not_found`")),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<RotatedSecret>> {
    let id = path_id(&id, "webhookEndpoint")?;
    let secret = new_secret();
    let sealed = app
        .webhooks
        .keys
        .seal(id.as_str(), &secret)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("while sealing a secret: {e}")))?;
    let overlap = app.webhooks.secret_overlap_seconds;
    if !store::rotate(&app.pool, &id, &client, &sealed, overlap).await? {
        return Err(not_found());
    }
    Ok(Envelope(RotatedSecret { secret }))
}

/// The endpoint a request names, or `webhookEndpoint_not_found`.
fn found(row: Option<store::Row>) -> ApiResult<Envelope<WebhookEndpoint>> {
    row.map(|row| Envelope(row.into())).ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::not_found("webhookEndpoint")
}
