//! `POST /v2/phone-validations`: checks the request, reads its flow
//! (`flow_cache`), writes the validation and its `otp.requested` event in one
//! statement that also enforces the send limits (`insert`, together with
//! the creates that arrive meanwhile: `group_commit`), then hands the event
//! to the relay. The answer never waits for RabbitMQ.

use super::flow_cache::{self, Flow};
use super::insert::{self, Created};
use super::{idempotency, parse_phone, send_limits, StringOrNumber};
use crate::auth::AuthClient;
use crate::envelope::{Envelope, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{check_len, parse_json, path_id, ApiBytes};
use crate::fraud::{self, rate_limits};
use crate::{stats, AppState};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use shared::domain::fraud::GuardMode;
use shared::domain::{
    Gateway, Language, PhoneNumber, PhoneSettings, PhoneValidation, ValidationMethod, ValidationType,
};
use shared::ObjectId;
use sqlx::PgConnection;
use utoipa::ToSchema;

/// Body of a create request (seed `create-phone-validation.txt`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePhoneValidation {
    /// The project's `_id`.
    #[schema(value_type = String, pattern = "^[0-9a-f]{24}$")]
    pub project: Option<String>,
    /// The project flow's `_id`.
    #[schema(value_type = String, pattern = "^[0-9a-f]{24}$")]
    pub project_flow: Option<String>,
    /// `+` and 1-4 digits, e.g. `+507`.
    #[schema(value_type = String, pattern = r"^\+[0-9]{1,4}$", example = "+507")]
    pub country_code: Option<String>,
    /// National number; spaces, dashes, dots and parentheses are ignored.
    /// It must be a number of that country that can receive an SMS (or,
    /// when the code goes by voice calls alone, a call: fixed lines too).
    #[schema(value_type = StringOrNumber, example = "62617737")]
    pub phone: Option<StringOrNumber>,
    #[schema(value_type = ValidationMethod)]
    pub validation_method: Option<ValidationMethod>,
    #[serde(rename = "type")]
    #[schema(value_type = ValidationType)]
    pub kind: Option<ValidationType>,
    /// Defaults to the flow's gateway.
    pub phone_gateway: Option<Gateway>,
    /// Defaults to now + the flow's `otpExpiresInSeconds`; at most 24 h ahead.
    pub expires_at: Option<DateTime<Utc>>,
    pub redirect_url: Option<String>,
    pub webhook_url: Option<String>,
    pub identity_url: Option<String>,
    #[serde(rename = "requires2FA")]
    pub requires_2fa: Option<bool>,
    /// The end user's IP address (IPv4 or IPv6).
    pub ip_address: Option<String>,
    /// Up to 200 characters.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    pub language: Option<Language>,
    #[schema(value_type = Option<Object>)]
    pub extra_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Bypass the resend cooldown (not the hourly cap).
    pub force: Option<bool>,
}

/// A create request, checked.
pub struct NewValidation {
    pub project: ObjectId,
    pub flow: ObjectId,
    pub phone: PhoneNumber,
    pub method: ValidationMethod,
    pub kind: ValidationType,
    pub body: CreatePhoneValidation,
}

impl CreatePhoneValidation {
    fn check(mut self) -> ApiResult<NewValidation> {
        let mut missing = Vec::new();
        for (absent, name) in [
            (self.project.is_none(), "project"),
            (self.project_flow.is_none(), "projectFlow"),
            (self.country_code.is_none(), "countryCode"),
            (self.phone.is_none(), "phone"),
            (self.validation_method.is_none(), "validationMethod"),
            (self.kind.is_none(), "type"),
        ] {
            if absent {
                missing.push(name);
            }
        }
        let (Some(project), Some(flow), Some(country), Some(phone), Some(method), Some(kind)) = (
            self.project.take(),
            self.project_flow.take(),
            self.country_code.take(),
            self.phone.take(),
            self.validation_method,
            self.kind,
        ) else {
            return Err(ApiError::Missing(missing));
        };
        let phone = parse_phone(&country, &phone.into_string())?;
        check_len(&self.name, "name", 200)?;
        for (value, field) in [
            (&self.redirect_url, "redirectUrl"),
            (&self.webhook_url, "webhookUrl"),
            (&self.identity_url, "identityUrl"),
        ] {
            if let Some(url) = value {
                shared::domain::check_url(url, field).map_err(|e| ApiError::invalid(e.0))?;
            }
        }
        if let Some(ip) = &self.ip_address {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::invalid("ipAddress"))?;
        }
        if let Some(expires_at) = self.expires_at {
            let now = Utc::now();
            if expires_at <= now || expires_at > now + Duration::days(1) {
                return Err(ApiError::invalid("expiresAt"));
            }
        }
        Ok(NewValidation {
            project: path_id(&project, "project")?,
            flow: path_id(&flow, "projectFlow")?,
            phone,
            method,
            kind,
            body: self,
        })
    }
}

impl NewValidation {
    /// What only the flow can say: a number that cannot receive an SMS, or
    /// of a country the flow does not allow, is refused unless it is one of
    /// the flow's test numbers, and a code may not live longer than the flow allows.
    fn check_against(&self, settings: &PhoneSettings) -> ApiResult<()> {
        let test_number = settings.test_code(self.phone.e164()).is_some();
        // A code that goes by voice calls alone reaches fixed lines too.
        let gateway = self.body.phone_gateway.unwrap_or(settings.phone_gateway);
        let channels = shared::domain::workflow::channels(Some(settings), gateway);
        let voice_only = !channels.is_empty() && channels.iter().all(|c| *c == Gateway::Voice);
        let reachable = if voice_only {
            self.phone.can_receive_call()
        } else {
            self.phone.can_receive_sms()
        };
        if !reachable && !test_number {
            return Err(ApiError::invalid("phone"));
        }
        // Geo permissions: by the number's region, not its calling code alone (`+1` is many countries).
        let allowed = &settings.allowed_countries;
        if !allowed.is_empty() && !test_number && !self.phone.region().is_some_and(|r| allowed.iter().any(|a| a == r)) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "country_not_allowed"));
        }
        if let Some(expires_at) = self.body.expires_at {
            let longest = Utc::now() + Duration::seconds(i64::from(settings.otp_expires_in_seconds));
            if expires_at > longest {
                return Err(ApiError::invalid("expiresAt"));
            }
        }
        Ok(())
    }
}

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
    let flow = flow_cache::cached(&app, &client, &new).await?;
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
    let Some(block) = fraud::blocks::blocking(conn, client, &country_code, new.phone.national()).await? else {
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
    metrics::counter!("fraud_guard_refused_total").increment(1);
    let wait = (block.until - Utc::now()).num_seconds().max(1);
    Ok(Some(
        ApiError::new(StatusCode::FORBIDDEN, "fraud_guard_blocked").with_retry_after(u64::try_from(wait).unwrap_or(1)),
    ))
}
