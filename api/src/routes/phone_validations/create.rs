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
use std::sync::Arc;
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
pub(super) struct NewValidation {
    pub(super) project: ObjectId,
    pub(super) flow: ObjectId,
    pub(super) phone: PhoneNumber,
    pub(super) method: ValidationMethod,
    pub(super) kind: ValidationType,
    pub(super) body: CreatePhoneValidation,
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
    let flow = cached_flow(&app, &client, &new).await?;

    // On the common path: the flow (cached for a second), then one statement
    // (limits + validation + event), shared with the creates that arrive
    // meanwhile and committed with them.
    let (validation, message, data) = match &idempotency {
        None => {
            let (validation, message) = match app.creates.create(&client, &new, &flow).await? {
                Some(created) => created,
                None => create_once(&mut *app.pool.acquire().await?, &client, &new, &flow.flow).await?,
            };
            let data = serde_json::to_value(&validation).map_err(anyhow::Error::from)?;
            (validation, message, data)
        }
        Some(key) => {
            let mut tx = app.pool.begin().await?;
            let (validation, message) = create_once(&mut tx, &client, &new, &flow.flow).await?;
            let data = serde_json::to_value(&validation).map_err(anyhow::Error::from)?;
            if !remember(&mut tx, &client, key, &data).await? {
                // A concurrent request with the same key won: answer with its result.
                drop(tx);
                return match replay(&app, &client, key).await? {
                    Some(stored) => Ok(Envelope(stored)),
                    None => Err(ApiError::conflict("idempotency_key_in_use")),
                };
            }
            tx.commit().await?;
            (validation, message, data)
        }
    };
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

/// Inserts the validation if the limits allow; otherwise answers why not.
async fn create_once(
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    flow: &Flow,
) -> ApiResult<(PhoneValidation, outbox::OutboxMessage)> {
    for _ in 0..2 {
        if let Some(inserted) = insert(&mut *conn, client, new, flow).await? {
            return Ok(inserted);
        }
        if let Some(refused) = refusal(&mut *conn, client, new, &flow.settings.0).await? {
            return Err(refused);
        }
        // Neither limit binds any more (the window moved on meanwhile): again.
    }
    Err(ApiError::conflict("otp_recently_sent").with_retry_after(1))
}

/// Flows read recently, by flow id. A create needs its flow's settings, which
/// rarely change: keeping them for a second saves a round trip per create in a
/// burst. A flow updated through this instance is dropped at once; through
/// another, it is seen within the second.
pub type FlowCache = moka::future::Cache<ObjectId, Arc<CachedFlow>>;

/// A flow with the owners it was read for.
pub struct CachedFlow {
    client: ObjectId,
    project: ObjectId,
    pub(super) flow: Flow,
}

pub fn flow_cache() -> FlowCache {
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(std::time::Duration::from_secs(1))
        .build()
}

async fn cached_flow(app: &AppState, client: &ObjectId, new: &NewValidation) -> ApiResult<Arc<CachedFlow>> {
    if let Some(cached) = app.flows.get(&new.flow).await {
        if cached.client == *client && cached.project == new.project {
            return Ok(cached);
        }
    }
    let flow = load_flow(&app.pool, client, new).await?;
    let cached = Arc::new(CachedFlow {
        client: client.clone(),
        project: new.project.clone(),
        flow,
    });
    app.flows.insert(new.flow.clone(), cached.clone()).await;
    Ok(cached)
}

/// The flow a create runs under.
#[derive(sqlx::FromRow)]
pub(super) struct Flow {
    /// The project's name: the title of the message.
    pub(super) project_name: String,
    pub(super) settings: Json<PhoneSettings>,
}

/// The project and flow, both the client's and the flow the project's.
async fn load_flow(pool: &sqlx::PgPool, client: &ObjectId, new: &NewValidation) -> ApiResult<Flow> {
    let row: Option<(String, Option<Json<PhoneSettings>>)> = sqlx::query_as(
        "SELECT p.name, f.phone FROM projects p
           LEFT JOIN project_flows f ON f.id = $2 AND f.project_id = p.id AND f.client_id = p.client_id
          WHERE p.id = $1 AND p.client_id = $3",
    )
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

/// Why the send ledger refused a create: the hourly cap first (it binds even
/// when forced), then the cooldown. `None` when neither binds any more (the
/// window moved on between the two statements): the caller tries again.
async fn refusal(
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    settings: &PhoneSettings,
) -> ApiResult<Option<ApiError>> {
    #[derive(sqlx::FromRow)]
    struct Window {
        last_sent_at: DateTime<Utc>,
        /// Sends within the last hour.
        recent: Vec<DateTime<Utc>>,
        now: DateTime<Utc>,
    }
    let window: Option<Window> = sqlx::query_as(
        "SELECT last_sent_at, array(SELECT t FROM unnest(sent_at) AS t WHERE t > now() - interval '1 hour') AS recent,
                now() AS now
           FROM phone_send_windows WHERE client_id = $1 AND country_code = $2 AND phone = $3",
    )
    .bind(client)
    .bind(new.phone.country().to_string())
    .bind(new.phone.national())
    .fetch_optional(conn)
    .await?;
    let Some(Window {
        last_sent_at: last,
        recent,
        now,
    }) = window
    else {
        return Ok(None);
    };
    if recent.len() >= usize::try_from(settings.max_sends_per_hour).unwrap_or(usize::MAX) {
        let free_at = recent.iter().min().copied().unwrap_or(now) + Duration::hours(1);
        return Ok(Some(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
                .with_retry_after(seconds_until(now, free_at)),
        ));
    }
    let allowed_at = last + Duration::seconds(i64::from(settings.resend_cooldown_seconds));
    if !new.body.force.unwrap_or(false) && allowed_at > now {
        return Ok(Some(
            ApiError::conflict("otp_recently_sent").with_retry_after(seconds_until(now, allowed_at)),
        ));
    }
    Ok(None)
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

/// In one statement: records the send in the phone's ledger if the cooldown
/// and the hourly cap allow it, and then inserts the validation and its
/// `otp.requested` event. `None` when a limit refused.
async fn insert(
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    flow: &Flow,
) -> ApiResult<Option<(PhoneValidation, outbox::OutboxMessage)>> {
    let body = &new.body;
    let settings = &flow.settings.0;
    let id = ObjectId::new();
    let event = outbox::Prepared::new(&OtpRequested::new(id.clone()))?;
    let inserted: Option<Inserted> = sqlx::query_as(&format!(
        "WITH window_ AS (
            INSERT INTO phone_send_windows AS w (client_id, country_code, phone, last_sent_at, sent_at)
            VALUES ($2, $5, $6, now(), ARRAY[now()])
            ON CONFLICT (client_id, country_code, phone) DO UPDATE
               SET last_sent_at = now(),
                   sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour') || now()
             WHERE ($25 OR w.last_sent_at <= now() - make_interval(secs => $26))
               AND cardinality(array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour')) < $27
            RETURNING 1
         ), v AS (
            INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone,
                phone_gateway, validation_method, type, otp_length, expires_at, name, phone_data, extra_params,
                redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language, max_attempts)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                   coalesce($11, now() + make_interval(secs => $28)), $12, $13, $14, $15, $16, $17, $18, $19, $20, $21
              FROM window_
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
    .bind(body.expires_at)
    .bind(&body.name)
    .bind(Json(serde_json::json!({ "title": flow.project_name })))
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
    .bind(body.force.unwrap_or(false))
    .bind(f64::from(settings.resend_cooldown_seconds))
    .bind(i32::try_from(settings.max_sends_per_hour).unwrap_or(i32::MAX))
    .bind(f64::from(settings.otp_expires_in_seconds))
    .fetch_optional(conn)
    .await?;
    Ok(inserted.map(|row| (row.validation, event.into_message(row.outbox_id))))
}
