//! `GET /v2/phone-validations/{id}` and the filtered list.

use crate::auth::AuthClient;
use crate::envelope::{Envelope, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ListQuery};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::domain::{CountryCode, ValidationStatus, ValidationType};

/// Retrieve a phone validation.
#[utoipa::path(get, path = "/v2/phone-validations/{id}", tag = "phone validations", params(("id" = String, Path)),
    responses((status = 200, body = PhoneValidation), (status = 404)), security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    Path(id): Path<String>,
) -> ApiResult<Envelope<PhoneValidation>> {
    let id = path_id(&id, "phone_validation")?;
    let validation: Option<PhoneValidation> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM phone_validations WHERE id = $1 AND client_id = $2"
    ))
    .bind(&id)
    .bind(&client)
    .fetch_optional(&app.pool)
    .await?;
    validation
        .map(Envelope)
        .ok_or_else(|| ApiError::not_found("phone_validation"))
}

const FILTER: &str = "client_id = $1
    AND ($2::text IS NULL OR project_id = $2)
    AND ($3::text IS NULL OR project_flow_id = $3)
    AND ($4::text IS NULL OR status = $4)
    AND ($5::text IS NULL OR type = $5)
    AND ($6::text IS NULL OR country_code = $6)
    AND ($7::text IS NULL OR phone = $7)";

/// List phone validations, newest first.
#[utoipa::path(get, path = "/v2/phone-validations", tag = "phone validations",
    params(("page" = Option<i64>, Query), ("limit" = Option<i64>, Query, description = "1..=100"),
        ("project" = Option<String>, Query), ("projectFlow" = Option<String>, Query),
        ("status" = Option<ValidationStatus>, Query), ("type" = Option<ValidationType>, Query),
        ("countryCode" = Option<String>, Query), ("phone" = Option<String>, Query)),
    responses((status = 200, body = [PhoneValidation])), security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<PhoneValidation>> {
    let query = ListQuery::parse(query.as_deref());
    let paging = query.paging()?;
    let project = query.id("project")?;
    let flow = query.id("projectFlow")?;
    let status: Option<ValidationStatus> = query.parsed("status")?;
    let kind: Option<ValidationType> = query.parsed("type")?;
    // A `+` left unencoded in a query string arrives as a space.
    let country = query
        .get("countryCode")
        .map(|raw| {
            let raw = raw.trim();
            let raw = if raw.starts_with('+') {
                raw.to_owned()
            } else {
                format!("+{raw}")
            };
            CountryCode::parse(&raw)
                .map(|c| c.to_string())
                .map_err(|_| ApiError::invalid("countryCode"))
        })
        .transpose()?;
    let phone = query
        .get("phone")
        .map(|raw| {
            let digits: String = raw
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
                .collect();
            if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                Err(ApiError::invalid("phone"))
            } else {
                Ok(digits)
            }
        })
        .transpose()?;

    let data: Vec<PhoneValidation> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM phone_validations WHERE {FILTER} ORDER BY id DESC LIMIT $8 OFFSET $9"
    ))
    .bind(&client)
    .bind(&project)
    .bind(&flow)
    .bind(status)
    .bind(kind)
    .bind(&country)
    .bind(&phone)
    .bind(paging.limit)
    .bind(paging.offset())
    .fetch_all(&app.pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM phone_validations WHERE {FILTER}"))
        .bind(&client)
        .bind(&project)
        .bind(&flow)
        .bind(status)
        .bind(kind)
        .bind(&country)
        .bind(&phone)
        .fetch_one(&app.pool)
        .await?;
    Ok(Page {
        data,
        page: paging.page,
        limit: paging.limit,
        total,
    })
}
