//! `POST /v2/phone-validations`: checks the request, applies the resend
//! cooldown and hourly cap under a per-phone lock, writes the validation and
//! its `otp.requested` event in one transaction, then hands the event to the
//! relay. The answer never waits for RabbitMQ.

use super::{parse_phone, StringOrNumber};
use crate::auth::AuthClient;
use crate::envelope::Envelope;
use crate::error::{ApiError, ApiResult};
use crate::extract::{check_len, parse_json, path_id};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shared::domain::{Gateway, Language, PhoneNumber, PhoneSettings, ValidationMethod, ValidationType};
use shared::events::OtpRequested;
use shared::validation::{PhoneValidation, COLUMNS};
use shared::{outbox, ObjectId};
use sqlx::types::Json;
use sqlx::PgConnection;
use utoipa::ToSchema;

/// Body of a create request (seed `create-phone-validation.txt`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePhoneValidation {
    pub project: Option<String>,
    pub project_flow: Option<String>,
    /// `+` and 1-4 digits, e.g. `+507`.
    pub country_code: Option<String>,
    /// National number; spaces, dashes, dots and parentheses are ignored.
    pub phone: Option<StringOrNumber>,
    pub validation_method: Option<ValidationMethod>,
    #[serde(rename = "type")]
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
    pub ip_address: Option<String>,
    pub name: Option<String>,
    pub language: Option<Language>,
    #[schema(value_type = Option<Object>)]
    pub extra_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Bypass the resend cooldown (not the hourly cap).
    pub force: Option<bool>,
}

/// A create request, checked.
struct NewValidation {
    project: ObjectId,
    flow: ObjectId,
    phone: PhoneNumber,
    method: ValidationMethod,
    kind: ValidationType,
    body: CreatePhoneValidation,
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

/// Create a phone validation: a code is generated and sent by the dispatcher.
#[utoipa::path(post, path = "/v2/phone-validations", tag = "phone validations",
    request_body = CreatePhoneValidation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 h")),
    responses(
        (status = 200, body = PhoneValidation, description = "Created, status `new`"),
        (status = 400, description = "invalid_<field>"), (status = 401), (status = 404),
        (status = 409, description = "otp_recently_sent (with Retry-After) or MissingParameter"),
        (status = 413), (status = 429, description = "too_many_requests (with Retry-After)")),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    AuthClient(client): AuthClient,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Envelope<serde_json::Value>> {
    let request: CreatePhoneValidation = parse_json(&body)?;
    let idempotency = idempotency_key(&headers, &body)?;
    if let Some(key) = &idempotency {
        if let Some(stored) = replay(&app, &client, key).await? {
            return Ok(Envelope(stored));
        }
    }
    let new = request.check()?;

    // Five round trips: BEGIN, the per-phone lock, one read (flow, project,
    // recent sends), one write (validation + its event), COMMIT.
    let mut tx = app.pool.begin().await?;
    let context = lock_and_load(&mut tx, &client, &new).await?;
    enforce_limits(&context, new.body.force.unwrap_or(false))?;
    let (validation, message) = insert(&mut tx, &client, &new, &context).await?;
    let data = serde_json::to_value(&validation).map_err(anyhow::Error::from)?;
    if let Some(key) = &idempotency {
        if !remember(&mut tx, &client, key, &data).await? {
            // A concurrent request with the same key won: answer with its result.
            drop(tx);
            return match replay(&app, &client, key).await? {
                Some(stored) => Ok(Envelope(stored)),
                None => Err(ApiError::conflict("idempotency_key_in_use")),
            };
        }
    }
    tx.commit().await?;
    app.relay.publish_soon([message]);
    metrics::counter!("phone_validations_created_total", "gateway" => validation.phone_gateway.as_str()).increment(1);
    tracing::info!(validation_id = %validation.id, gateway = %validation.phone_gateway, "phone validation created");
    Ok(Envelope(data))
}

struct IdempotencyKey {
    key: String,
    request_hash: String,
}

fn idempotency_key(headers: &HeaderMap, body: &[u8]) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| (1..=255).contains(&k.len()))
        .ok_or_else(|| ApiError::invalid("idempotencyKey"))?;
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        request_hash: hex::encode(Sha256::digest(body)),
    }))
}

/// The stored answer for this key, if one is younger than 24 h. The same key
/// with a different body is refused.
async fn replay(app: &AppState, client: &ObjectId, key: &IdempotencyKey) -> ApiResult<Option<serde_json::Value>> {
    let stored: Option<(String, Json<serde_json::Value>)> = sqlx::query_as(
        "SELECT request_hash, response FROM idempotency_keys
          WHERE client_id = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
    )
    .bind(client)
    .bind(&key.key)
    .fetch_optional(&app.pool)
    .await?;
    match stored {
        None => Ok(None),
        Some((hash, _)) if hash != key.request_hash => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )),
        Some((_, Json(response))) => Ok(Some(response)),
    }
}

/// Keeps the answer for the key; `false` if another request holds the key.
async fn remember(
    tx: &mut PgConnection,
    client: &ObjectId,
    key: &IdempotencyKey,
    data: &serde_json::Value,
) -> ApiResult<bool> {
    let stored = sqlx::query(
        "INSERT INTO idempotency_keys (client_id, key, request_hash, response) VALUES ($1, $2, $3, $4)
         ON CONFLICT (client_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response, created_at = now()
          WHERE idempotency_keys.created_at <= now() - interval '24 hours'",
    )
    .bind(client)
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(Json(data))
    .execute(tx)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// What a create needs to know, read in one statement under the lock.
#[derive(sqlx::FromRow)]
struct CreateContext {
    /// The project's name: the title of the message.
    project_name: String,
    settings: Json<PhoneSettings>,
    /// Codes recently sent to this phone, as the database clock sees them.
    newest: Option<DateTime<Utc>>,
    last_hour: i64,
    oldest_in_hour: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
}

/// Takes the per-phone advisory lock (so concurrent creates for one phone
/// cannot both slip past the limits), then reads the project, the flow (both
/// the client's, and the flow the project's) and the phone's recent history.
async fn lock_and_load(tx: &mut PgConnection, client: &ObjectId, new: &NewValidation) -> ApiResult<CreateContext> {
    let country = new.phone.country().to_string();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{client}|{country}|{}", new.phone.national()))
        .execute(&mut *tx)
        .await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        project_name: String,
        settings: Option<Json<PhoneSettings>>,
        newest: Option<DateTime<Utc>>,
        last_hour: i64,
        oldest_in_hour: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT p.name AS project_name, f.phone AS settings, h.newest, h.last_hour, h.oldest_in_hour, now() AS now
           FROM projects p
           LEFT JOIN project_flows f ON f.id = $2 AND f.project_id = p.id AND f.client_id = p.client_id
          CROSS JOIN LATERAL (
                SELECT max(created_at) AS newest,
                       count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour,
                       min(created_at) FILTER (WHERE created_at > now() - interval '1 hour') AS oldest_in_hour
                  FROM phone_validations
                 WHERE client_id = $3 AND country_code = $4 AND phone = $5
                   AND created_at > now() - make_interval(secs =>
                         greatest(3600, coalesce((f.phone->>'resendCooldownSeconds')::float8, 0)))
          ) h
          WHERE p.id = $1 AND p.client_id = $3",
    )
    .bind(&new.project)
    .bind(&new.flow)
    .bind(client)
    .bind(&country)
    .bind(new.phone.national())
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| ApiError::not_found("project"))?;
    let settings = row.settings.ok_or_else(|| ApiError::not_found("projectFlow"))?;
    Ok(CreateContext {
        project_name: row.project_name,
        settings,
        newest: row.newest,
        last_hour: row.last_hour,
        oldest_in_hour: row.oldest_in_hour,
        now: row.now,
    })
}

/// The hourly cap (always) and the resend cooldown (unless forced).
fn enforce_limits(context: &CreateContext, force: bool) -> ApiResult<()> {
    let settings = &context.settings.0;
    let now = context.now;
    if context.last_hour >= i64::from(settings.max_sends_per_hour) {
        let free_at = context.oldest_in_hour.unwrap_or(now) + Duration::hours(1);
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            .with_retry_after(seconds_until(now, free_at)));
    }
    if let Some(newest) = context.newest {
        let allowed_at = newest + Duration::seconds(i64::from(settings.resend_cooldown_seconds));
        if !force && allowed_at > now {
            return Err(ApiError::conflict("otp_recently_sent").with_retry_after(seconds_until(now, allowed_at)));
        }
    }
    Ok(())
}

fn seconds_until(now: DateTime<Utc>, then: DateTime<Utc>) -> u64 {
    let millis = (then - now).num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1000).unwrap_or(1)
}

/// The validation and its `otp.requested` event, in one statement.
#[derive(sqlx::FromRow)]
struct Inserted {
    #[sqlx(flatten)]
    validation: PhoneValidation,
    outbox_id: i64,
}

async fn insert(
    tx: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    context: &CreateContext,
) -> ApiResult<(PhoneValidation, outbox::OutboxMessage)> {
    let body = &new.body;
    let settings = &context.settings.0;
    let id = ObjectId::new();
    let event = outbox::Prepared::new(&OtpRequested::new(id.clone()))?;
    let expires_at = body
        .expires_at
        .unwrap_or_else(|| Utc::now() + Duration::seconds(i64::from(settings.otp_expires_in_seconds)));
    let inserted: Inserted = sqlx::query_as(&format!(
        "WITH v AS (
            INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone,
                phone_gateway, validation_method, type, otp_length, expires_at, name, phone_data, extra_params,
                redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language, max_attempts)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
            RETURNING {COLUMNS}
         ), o AS (
            INSERT INTO outbox (routing_key, message_id, payload)
            SELECT $22, $23, $24::text::jsonb FROM v
            RETURNING id
         )
         SELECT v.*, o.id AS outbox_id FROM v, o"
    ))
    .bind(&id)
    .bind(client)
    .bind(&new.project)
    .bind(&new.flow)
    .bind(new.phone.country().to_string())
    .bind(new.phone.national())
    .bind(body.phone_gateway.unwrap_or(settings.phone_gateway))
    .bind(new.method)
    .bind(new.kind)
    .bind(i16::from(settings.otp_length))
    .bind(expires_at)
    .bind(&body.name)
    .bind(Json(serde_json::json!({ "title": context.project_name })))
    .bind(body.extra_params.clone().map(|p| Json(serde_json::Value::Object(p))))
    .bind(&body.redirect_url)
    .bind(&body.webhook_url)
    .bind(&body.identity_url)
    .bind(body.requires_2fa.unwrap_or(false))
    .bind(&body.ip_address)
    .bind(body.language.unwrap_or(settings.language))
    .bind(i32::try_from(settings.max_attempts).unwrap_or(i32::MAX))
    .bind(event.routing_key)
    .bind(&event.message_id)
    .bind(event.payload_text()?)
    .fetch_one(tx)
    .await?;
    Ok((inserted.validation, event.into_message(inserted.outbox_id)))
}
