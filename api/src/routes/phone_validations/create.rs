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
use std::collections::HashMap;
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
    project_name: String,
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

/// The creates one statement may write together: one client, project, flow
/// and `force` (the limits are the flow's).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Group {
    client: ObjectId,
    project: ObjectId,
    flow: ObjectId,
    force: bool,
}

impl Group {
    pub(super) fn of(client: &ObjectId, new: &NewValidation) -> Self {
        Self {
            client: client.clone(),
            project: new.project.clone(),
            flow: new.flow.clone(),
            force: new.body.force.unwrap_or(false),
        }
    }
}

/// One create's own values, ready to bind, with its event.
pub(super) struct NewRow {
    pub(super) id: ObjectId,
    pub(super) country_code: String,
    pub(super) phone: String,
    gateway: &'static str,
    method: &'static str,
    kind: &'static str,
    expires_at: Option<DateTime<Utc>>,
    name: Option<String>,
    extra_params: Option<Json<serde_json::Value>>,
    redirect_url: Option<String>,
    webhook_url: Option<String>,
    identity_url: Option<String>,
    requires_2fa: bool,
    ip_address: Option<String>,
    language: &'static str,
    pub(super) event: outbox::Prepared,
}

impl NewRow {
    pub(super) fn new(new: &NewValidation, settings: &PhoneSettings) -> Result<Self, sqlx::Error> {
        let body = &new.body;
        let id = ObjectId::new();
        Ok(Self {
            event: outbox::Prepared::new(&OtpRequested::new(id.clone()))?,
            id,
            country_code: new.phone.country().to_string(),
            phone: new.phone.national().to_owned(),
            gateway: body.phone_gateway.unwrap_or(settings.phone_gateway).as_str(),
            method: new.method.as_str(),
            kind: new.kind.as_str(),
            expires_at: body.expires_at,
            name: body.name.clone(),
            extra_params: body.extra_params.clone().map(|p| Json(serde_json::Value::Object(p))),
            redirect_url: body.redirect_url.clone(),
            webhook_url: body.webhook_url.clone(),
            identity_url: body.identity_url.clone(),
            requires_2fa: body.requires_2fa.unwrap_or(false),
            ip_address: body.ip_address.clone(),
            language: body.language.unwrap_or(settings.language).as_str(),
        })
    }
}

/// One written validation and its outbox row.
#[derive(sqlx::FromRow)]
struct Inserted {
    #[sqlx(flatten)]
    validation: PhoneValidation,
    outbox_id: i64,
}

/// In one statement: records each send in its phone's ledger if the cooldown
/// and the hourly cap allow it, then inserts those validations and their
/// `otp.requested` events. Answers by validation id for the rows written;
/// a row a limit refused is absent. The phones must be distinct.
pub(super) async fn insert_many(
    conn: &mut PgConnection,
    group: &Group,
    flow: &Flow,
    rows: &[NewRow],
) -> Result<HashMap<String, (PhoneValidation, i64)>, sqlx::Error> {
    let settings = &flow.settings.0;
    let owned = |f: fn(&NewRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let optional = |f: fn(&NewRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
    let payloads = rows
        .iter()
        .map(|r| r.event.payload_text())
        .collect::<Result<Vec<&str>, sqlx::Error>>()?;
    let inserted: Vec<Inserted> = sqlx::query_as(&format!(
        "WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::timestamptz[], $8::text[], $9::jsonb[], $10::text[], $11::text[],
                                 $12::text[], $13::boolean[], $14::text[], $15::text[], $16::text[], $17::text[])
                AS i(id, country_code, phone, phone_gateway, validation_method, type, expires_at, name,
                     extra_params, redirect_url, webhook_url, identity_url, requires_2fa, ip_address,
                     language, message_id, payload)
         ), window_ AS (
            INSERT INTO phone_send_windows AS w (client_id, country_code, phone, last_sent_at, sent_at)
            SELECT $18, country_code, phone, now(), ARRAY[now()] FROM input
            ON CONFLICT (client_id, country_code, phone) DO UPDATE
               SET last_sent_at = now(),
                   sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour') || now()
             WHERE ($21 OR w.last_sent_at <= now() - make_interval(secs => $22))
               AND cardinality(array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour')) < $23
            RETURNING country_code, phone
         ), v AS (
            INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone,
                phone_gateway, validation_method, type, otp_length, expires_at, name, phone_data, extra_params,
                redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language, max_attempts)
            SELECT i.id, $18, $19, $20, i.country_code, i.phone, i.phone_gateway, i.validation_method, i.type, $24,
                   coalesce(i.expires_at, now() + make_interval(secs => $25)), i.name, $26, i.extra_params,
                   i.redirect_url, i.webhook_url, i.identity_url, i.requires_2fa, i.ip_address, i.language, $27
              FROM input i JOIN window_ w ON w.country_code = i.country_code AND w.phone = i.phone
            RETURNING {COLUMNS}
         ), o AS (
            INSERT INTO outbox (routing_key, message_id, payload)
            SELECT $28, i.message_id, i.payload::jsonb FROM v JOIN input i ON i.id = v.id
            RETURNING id, message_id
         )
         SELECT v.*, o.id AS outbox_id FROM v JOIN input i ON i.id = v.id JOIN o ON o.message_id = i.message_id"
    ))
    .bind(owned(|r| r.id.as_str()))
    .bind(owned(|r| &r.country_code))
    .bind(owned(|r| &r.phone))
    .bind(owned(|r| r.gateway))
    .bind(owned(|r| r.method))
    .bind(owned(|r| r.kind))
    .bind(rows.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .bind(optional(|r| r.name.as_deref()))
    .bind(rows.iter().map(|r| r.extra_params.clone()).collect::<Vec<_>>())
    .bind(optional(|r| r.redirect_url.as_deref()))
    .bind(optional(|r| r.webhook_url.as_deref()))
    .bind(optional(|r| r.identity_url.as_deref()))
    .bind(rows.iter().map(|r| r.requires_2fa).collect::<Vec<_>>())
    .bind(optional(|r| r.ip_address.as_deref()))
    .bind(owned(|r| r.language))
    .bind(owned(|r| &r.event.message_id))
    .bind(payloads)
    .bind(&group.client)
    .bind(&group.project)
    .bind(&group.flow)
    .bind(group.force)
    .bind(f64::from(settings.resend_cooldown_seconds))
    .bind(i32::try_from(settings.max_sends_per_hour).unwrap_or(i32::MAX))
    .bind(i16::from(settings.otp_length))
    .bind(f64::from(settings.otp_expires_in_seconds))
    .bind(Json(serde_json::json!({ "title": flow.project_name })))
    .bind(i32::try_from(settings.max_attempts).unwrap_or(i32::MAX))
    .bind(shared::events::routing::OTP_REQUESTED)
    .fetch_all(conn)
    .await?;
    Ok(inserted
        .into_iter()
        .map(|row| (row.validation.id.to_string(), (row.validation, row.outbox_id)))
        .collect())
}

/// A single create through `insert_many`. `None` when a limit refused.
async fn insert(
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    flow: &Flow,
) -> ApiResult<Option<(PhoneValidation, outbox::OutboxMessage)>> {
    let row = NewRow::new(new, &flow.settings.0)?;
    let mut written = insert_many(conn, &Group::of(client, new), flow, std::slice::from_ref(&row)).await?;
    Ok(written
        .remove(row.id.as_str())
        .map(|(validation, outbox_id)| (validation, row.event.into_message(outbox_id))))
}
