//! `GET /v2/phone-validations/{id}` and the filtered list.

use crate::auth::AuthClient;
use crate::envelope::{Envelope, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, ListQuery};
use crate::listing::{self, Filter};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::domain::{CountryCode, PhoneNumber, ValidationStatus, ValidationType};

/// Retrieve a phone validation.
#[utoipa::path(get, path = "/v2/phone-validations/{id}", tag = "phone validations", params(("id" = String, Path)),
    responses((status = 200, body = PhoneValidation), (status = 404)), security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    Path(id): Path<String>,
) -> ApiResult<Envelope<PhoneValidation>> {
    let id = path_id(&id, "phone_validation")?;
    let validation = listing::one(&app.pool, "phone_validations", COLUMNS, &id, &client).await?;
    validation
        .map(Envelope)
        .ok_or_else(|| ApiError::not_found("phone_validation"))
}

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
    let (country, phone) = phone_filter(&query)?;
    let filter = Filter::client(&client)?
        .eq("project_id", query.id("project")?)?
        .eq("project_flow_id", query.id("projectFlow")?)?
        .eq("status", query.parsed::<ValidationStatus>("status")?)?
        .eq("type", query.parsed::<ValidationType>("type")?)?
        .eq("country_code", country)?
        .eq("phone", phone)?;
    listing::page(&app.pool, "phone_validations", COLUMNS, filter, paging).await
}

/// The `countryCode` and `phone` filters. A `+` left unencoded in a query
/// string arrives as a space; with both given, the number is compared in its
/// canonical form, as it is stored.
fn phone_filter(query: &ListQuery) -> ApiResult<(Option<String>, Option<String>)> {
    let country = query
        .get("countryCode")
        .map(|raw| {
            let raw = raw.trim();
            let raw = if raw.starts_with('+') {
                raw.to_owned()
            } else {
                format!("+{raw}")
            };
            CountryCode::parse(&raw).map_err(|_| ApiError::invalid("countryCode"))
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
                return Err(ApiError::invalid("phone"));
            }
            Ok(match country {
                Some(country) => PhoneNumber::parse(country, &digits)
                    .map(|number| number.national().to_owned())
                    .unwrap_or(digits),
                None => digits,
            })
        })
        .transpose()?;
    Ok((country.map(|c| c.to_string()), phone))
}
