//! `GET /v2/phone-validations/{id}` and the filtered list.

use crate::auth::AuthClient;
use crate::envelope::{Envelope, List, Page, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, RawPathId};
use crate::listing::{ListQuery, PagingParams};
use crate::state::AppState;
use crate::store::validations::{self, Filters};
use axum::extract::{RawQuery, State};
use shared::domain::PhoneValidation;
use shared::domain::{digits_of, CountryCode, PhoneNumber, ValidationStatus, ValidationType, SEPARATORS};

/// Retrieve a phone validation.
#[utoipa::path(get, path = "/v2/phone-validations/{id}", tag = "phone validations", operation_id = "getPhoneValidation",
    params(("id" = String, Path, description = "Phone validation id", pattern = "^[0-9a-f]{24}$")),
    responses(
        (status = 200, body = Success<PhoneValidation>, description = "The validation"),
        (status = 404, description = "`phone_validation_not_found`")),
    security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawPathId(id): RawPathId,
) -> ApiResult<Envelope<PhoneValidation>> {
    let id = path_id(&id, "phone_validation")?;
    let validation = validations::one(&app.pool, &id, &client).await?;
    validation
        .map(Envelope)
        .ok_or_else(|| ApiError::not_found("phone_validation"))
}

/// List phone validations, newest first.
#[utoipa::path(get, path = "/v2/phone-validations", tag = "phone validations", operation_id = "listPhoneValidations",
    params(
        PagingParams,
        ("project" = Option<String>, Query, pattern = "^[0-9a-f]{24}$"),
        ("projectFlow" = Option<String>, Query, pattern = "^[0-9a-f]{24}$"),
        ("status" = Option<ValidationStatus>, Query), ("type" = Option<ValidationType>, Query),
        ("countryCode" = Option<String>, Query, description = "A calling code, e.g. `+507` (the `+` may be left out)"),
        ("phone" = Option<String>, Query, pattern = r"^[ .()-]*\+?(?:[0-9][ .()-]*){1,17}$",
            description = "A national number of `countryCode`, or an international one (`+` or `00` and its country code first, which then filters on that country too): 1 to 17 digits; spaces, dashes, dots and parentheses are ignored; compared in canonical form")),
    responses(
        (status = 200, body = List<PhoneValidation>, description = "A page of validations"),
        (status = 400, description = "`invalid_<parameter>`")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    RawQuery(query): RawQuery,
) -> ApiResult<Page<PhoneValidation>> {
    let query = ListQuery::parse(query.as_deref())?;
    let paging = query.paging()?;
    let (country, phone) = phone_filter(&query)?;
    let filters = Filters {
        project: query.id("project")?,
        flow: query.id("projectFlow")?,
        status: query.parsed::<ValidationStatus>("status")?,
        kind: query.parsed::<ValidationType>("type")?,
        country_code: country,
        phone,
    };
    validations::page(&app.pool, &client, filters, paging).await
}

/// The `countryCode` and `phone` filters. A `+` left unencoded in a query
/// string arrives as a space, and it may be left out (exactly what the
/// document's pattern says: `^[+ ]?(?:1|7|20|…)$`). The number is compared
/// in its canonical form, as it is stored (docs/contract.md §4.4): a national
/// number of `countryCode` (`1 415 555 0123`, trunk prefix dropped), or an
/// international one (`+1 (415) 555-0123`, `001 415 555 0123`), which
/// also filters on its own country code when `countryCode` is not given.
/// A number that reads as neither is compared as its digits.
fn phone_filter(query: &ListQuery) -> ApiResult<(Option<String>, Option<String>)> {
    let mut country = query
        .get("countryCode")
        .map(|raw| {
            let code = raw.strip_prefix(['+', ' ']).unwrap_or(raw);
            CountryCode::parse(&format!("+{code}")).map_err(|_| ApiError::invalid("countryCode"))
        })
        .transpose()?;
    let Some(raw) = query.get("phone") else {
        return Ok((country.map(|c| c.to_string()), None));
    };
    let lead = raw.trim_start_matches(SEPARATORS);
    let international = || PhoneNumber::parse_international(lead).ok();
    let number = match country {
        Some(code) if !lead.starts_with('+') => PhoneNumber::parse(code, lead).ok().or_else(international),
        _ => international(),
    };
    let phone = match number {
        Some(number) => {
            country = country.or(Some(number.country()));
            number.national().to_owned()
        }
        None => digits_of(lead.strip_prefix('+').unwrap_or(lead)).map_err(|_| ApiError::invalid("phone"))?,
    };
    Ok((country.map(|c| c.to_string()), Some(phone)))
}
