//! `POST /v2/phone-validations`: checks the request, reads its flow
//! (`flow_cache`), writes the validation and its `otp.requested` event in one
//! statement that also enforces the send limits (`insert`, together with
//! the creates that arrive meanwhile: `group_commit`), then hands the event
//! to the relay. The answer never waits for RabbitMQ.

use crate::auth::AuthClient;
use crate::create::flow_cache::{self, Flow};
use crate::create::insert::{self, Created};
use crate::create::request::{CreatePhoneValidation, NewValidation};
use crate::create::{idempotency, send_limits};
use crate::envelope::{Envelope, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, ApiBytes};
use crate::fraud::{self, rate_limits};
use crate::state::AppState;
use crate::stats;
use axum::extract::State;
use axum::http::HeaderMap;
use shared::domain::fraud::GuardMode;
use shared::domain::PhoneValidation;
use shared::ObjectId;
use sqlx::PgConnection;

/// Create a phone validation: a code is generated and sent by the dispatcher.
#[utoipa::path(post, path = "/v2/phone-validations", tag = "phone validations",
    operation_id = "createPhoneValidation", request_body = CreatePhoneValidation,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~](?:[ -~]{0,253}[!-~])?$",
        description = "Replays the first answer for 24 h (1 to 255 printable ASCII characters)")),
    responses(
        (status = 200, body = Success<PhoneValidation>, description = "Created, status `new`"),
        (status = 400, description = "`invalid_json`, `invalid_<field>` or `invalid_idempotencyKey`"),
        (status = 403, description = "`country_not_allowed`: the flow does not allow the number's country; `fraud_guard_blocked`: the fraud guard blocks the number's prefix (with `Retry-After`: the block's end)",
            headers(("Retry-After" = u64, description = "Seconds until the block ends"))),
        (status = 404, description = "`project_not_found` or `projectFlow_not_found`"),
        (status = 409, description = "`otp_recently_sent` (with `Retry-After`), `idempotency_key_in_use`, or `MissingParameter`",
            headers(("Retry-After" = u64, description = "Seconds until a code may be sent again"))),
        (status = 422, description = "`idempotency_key_reused`: the key came before with another body"),
        (status = 429, description = "`too_many_requests`: the hourly cap of the phone, or the flow's `rateLimits` (with `Retry-After`)",
            headers(("Retry-After" = u64, description = "Seconds until a code may be sent again")))),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Envelope<serde_json::Value>> {
    let request: CreatePhoneValidation = parse_json(&body)?;
    let idempotency = idempotency::key(&headers, &body)?;
    if let Some(key) = &idempotency {
        if let Some(stored) = idempotency::replay(&app.pool, &client, key).await? {
            return Ok(Envelope(stored));
        }
    }
    let new = request.check()?;
    let flow = flow_cache::cached(&app.flows, &app.pool, &client, &new).await?;
    new.check_against(&flow.flow.settings.0)?;
    // From taking rate-limit units to giving them back if the create is
    // refused, in a task of its own: a client that hangs up meanwhile must
    // not leave units taken for a create that never happened.
    let settle = {
        let app = app.clone();
        tokio::spawn(async move {
            let ip = new.body.ip_address.as_deref().and_then(|ip| ip.parse().ok());
            let limits = &flow.flow.settings.0.rate_limits;
            let taken = rate_limits::take(&app.pool, &new.flow, limits, ip).await?;
            let written = write(&app, &client, &new, &flow, idempotency.as_ref()).await;
            if let (Err(_), Some(taken)) = (&written, taken) {
                rate_limits::give_back(&app.pool, taken).await;
            }
            written
        })
    };
    let written = settle.await.map_err(anyhow::Error::from)?;
    let (Created { validation, events }, data) = match written? {
        Written::Created(created, data) => (*created, data),
        Written::Replayed(stored) => return Ok(Envelope(stored)),
    };
    app.relay.publish_soon(events);
    metrics::counter!("phone_validations_created_total", "gateway" => validation.phone_gateway.as_str()).increment(1);
    tracing::info!(validation_id = %validation.id, gateway = %validation.phone_gateway, "phone validation created");
    Ok(Envelope(data))
}

/// What `write` did: created the validation, or found that a concurrent
/// request with the same idempotency key had.
enum Written {
    Created(Box<Created>, serde_json::Value),
    Replayed(serde_json::Value),
}

/// Writes the validation (limits and guard permitting) and its event.
async fn write(
    app: &AppState,
    client: &ObjectId,
    new: &NewValidation,
    flow: &std::sync::Arc<flow_cache::CachedFlow>,
    idempotency: Option<&idempotency::IdempotencyKey>,
) -> ApiResult<Written> {
    // On the common path: the flow (cached for a second), then one statement
    // (limits + validation + event), shared with the creates that arrive
    // meanwhile and committed with them.
    match idempotency {
        None => {
            let created = match app.creates.create(client, new, flow).await? {
                Some(created) => created,
                None => create_once(app, &mut *app.pool.acquire().await?, client, new, &flow.flow).await?,
            };
            let data = serde_json::to_value(&created.validation).map_err(anyhow::Error::from)?;
            Ok(Written::Created(Box::new(created), data))
        }
        Some(key) => {
            let mut tx = app.pool.begin().await?;
            let created = create_once(app, &mut tx, client, new, &flow.flow).await?;
            let data = serde_json::to_value(&created.validation).map_err(anyhow::Error::from)?;
            if !idempotency::remember(&mut tx, client, key, &data).await? {
                // A concurrent request with the same key won: answer with its result.
                drop(tx);
                return match idempotency::replay(&app.pool, client, key).await? {
                    Some(stored) => Ok(Written::Replayed(stored)),
                    None => Err(ApiError::conflict("idempotency_key_in_use")),
                };
            }
            tx.commit().await?;
            Ok(Written::Created(Box::new(created), data))
        }
    }
}

/// Inserts the validation if the guard and the limits allow; otherwise
/// answers why not.
async fn create_once(
    app: &AppState,
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    flow: &Flow,
) -> ApiResult<Created> {
    for _ in 0..2 {
        if let Some(inserted) = insert::insert_one(&mut *conn, client, new, flow).await? {
            return Ok(inserted);
        }
        if let Some(refused) = guard_refusal(app, &mut *conn, client, new, flow).await? {
            return Err(refused);
        }
        if let Some(refused) = send_limits::refusal(&mut *conn, client, new, &flow.settings.0).await? {
            return Err(refused);
        }
        // Neither limit binds any more (the window moved on meanwhile): again.
    }
    Err(ApiError::conflict("otp_recently_sent").with_retry_after(1))
}

/// `403:fraud_guard_blocked` when a block of the fraud guard refused the
/// create (counted in the stats: nothing else records it).
async fn guard_refusal(
    app: &AppState,
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    flow: &Flow,
) -> ApiResult<Option<ApiError>> {
    let settings = &flow.settings.0;
    if settings.fraud_guard == GuardMode::Off || settings.test_code(new.phone.e164()).is_some() {
        return Ok(None);
    }
    let country_code = new.phone.country().to_string();
    let Some(until) = shared::store::fraud::blocking(conn, client, &country_code, new.phone.national()).await? else {
        return Ok(None);
    };
    let prefix = fraud::prefix_of(&country_code, new.phone.national());
    let refused = stats::Refused {
        client,
        project: &new.project,
        flow: &new.flow,
        region: new.phone.region().unwrap_or_default(),
        country_code: &country_code,
        prefix: &prefix,
        channel: new.body.phone_gateway.unwrap_or(settings.phone_gateway).as_str(),
    };
    if let Err(error) = stats::record_blocked(&app.pool, &refused).await {
        tracing::warn!(%error, "could not count a create the fraud guard refused");
    }
    Ok(Some(fraud::refused(until)))
}
