//! The fraud guard's routes (docs/contract.md §9): a client's active blocks, lifting
//! one, and its safe list (numbers never blocked).

use crate::auth::AuthClient;
use crate::envelope::{Envelope, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, parse_phone, path_id, ApiBytes, StringOrNumber};
use crate::fraud::blocks::{self, Block};
use crate::state::AppState;
use crate::store::safe_list::{self, SafeListEntry};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The client's active blocks, newest first.
#[utoipa::path(get, path = "/v2/fraud-guard/blocks", tag = "fraud guard", operation_id = "listFraudGuardBlocks",
    responses((status = 200, body = Success<Vec<Block>>)),
    security(("bearer" = [])))]
pub async fn list_blocks(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
) -> ApiResult<Envelope<Vec<Block>>> {
    let active = blocks::active(&app.pool, Some(&client)).await?;
    Ok(Envelope(active.into_iter().map(|(_, block)| block).collect()))
}

/// Lifts a block: creates to the prefix are accepted again, and the guard
/// judges it afresh from now on.
#[utoipa::path(delete, path = "/v2/fraud-guard/blocks/{prefix}", tag = "fraud guard", operation_id = "liftFraudGuardBlock",
    params(("prefix" = String, Path, pattern = r"^\+[1-9][0-9]{0,6}$",
        description = "A prefix (calling code and 3 national digits) or a whole calling code; URL-encoded, e.g. `%2B507626`")),
    responses((status = 200, body = Success<Lifted>, description = "Lifted"),
        (status = 400, description = "`invalid_prefix`"),
        (status = 404, description = "`fraud_guard_block_not_found`")),
    security(("bearer" = [])))]
pub async fn lift_block(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    Path(prefix): Path<String>,
) -> ApiResult<Envelope<Lifted>> {
    let prefix = block_key(&prefix).ok_or_else(|| ApiError::invalid("prefix"))?;
    if !blocks::lift(&app.pool, &client, prefix).await? {
        return Err(ApiError::not_found("fraud_guard_block"));
    }
    tracing::info!(client_id = %client, prefix, "fraud guard block lifted");
    Ok(Envelope(Lifted {
        prefix: prefix.to_owned(),
        lifted: true,
    }))
}

/// What a block is keyed by (`blocks::Block::prefix`): `+`, a calling code
/// (1-4 digits, never starting with 0) and up to 3 national digits, as the
/// document's pattern says.
fn block_key(raw: &str) -> Option<&str> {
    let digits = raw.strip_prefix('+')?;
    let well_formed =
        (1..=7).contains(&digits.len()) && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed.then_some(raw)
}

/// A block lifted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lifted {
    pub prefix: String,
    pub lifted: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewSafeListEntry {
    /// `+` and 1-4 digits, e.g. `+507`.
    pub country_code: Option<String>,
    pub phone: Option<StringOrNumber>,
}

/// Adds a number to the safe list (idempotent: the same number answers its entry).
#[utoipa::path(post, path = "/v2/safe-list", tag = "fraud guard", operation_id = "addSafeListEntry",
    request_body = NewSafeListEntry,
    responses((status = 200, body = Success<SafeListEntry>), (status = 400, description = "`invalid_countryCode`, `invalid_phone`"),
        (status = 409, description = "`MissingParameter`")),
    security(("bearer" = [])))]
pub async fn add(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Envelope<SafeListEntry>> {
    let request: NewSafeListEntry = parse_json(&body)?;
    let (country, phone) = match (request.country_code, request.phone) {
        (Some(country), Some(phone)) => (country, phone),
        (country, phone) => {
            let missing = [(country.is_none(), "countryCode"), (phone.is_none(), "phone")];
            return Err(ApiError::Missing(
                missing.into_iter().filter(|m| m.0).map(|m| m.1).collect(),
            ));
        }
    };
    let phone = parse_phone(&country, &phone.into_string())?;
    let entry = safe_list::add(&app.pool, &client, &phone).await?;
    Ok(Envelope(entry))
}

/// The client's safe list, newest first (at most 1,000 entries).
#[utoipa::path(get, path = "/v2/safe-list", tag = "fraud guard", operation_id = "listSafeList",
    responses((status = 200, body = Success<Vec<SafeListEntry>>)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
) -> ApiResult<Envelope<Vec<SafeListEntry>>> {
    let entries = safe_list::list(&app.pool, &client).await?;
    Ok(Envelope(entries))
}

/// Removes a number from the safe list.
#[utoipa::path(delete, path = "/v2/safe-list/{id}", tag = "fraud guard", operation_id = "removeSafeListEntry",
    params(("id" = String, Path)),
    responses((status = 200, body = Success<SafeListEntry>), (status = 404, description = "`safe_list_entry_not_found`")),
    security(("bearer" = [])))]
pub async fn remove(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    Path(id): Path<String>,
) -> ApiResult<Envelope<SafeListEntry>> {
    let id = path_id(&id, "safe_list_entry")?;
    let removed = safe_list::remove(&app.pool, &client, &id).await?;
    removed
        .map(Envelope)
        .ok_or_else(|| ApiError::not_found("safe_list_entry"))
}
