//! The create statement: one statement records each send in its phone's
//! ledger if the cooldown and the hourly cap allow it, then inserts those
//! validations and their `otp.requested` events. A group of concurrent
//! creates (`group_commit.rs`) and a single create use the same statement,
//! so the limits are enforced in exactly one place.

use super::flow_cache::Flow;
use super::request::NewValidation;
use crate::error::ApiResult;
use chrono::{DateTime, Utc};
use shared::domain::fraud::GuardMode;
use shared::domain::phone_validation::{PhoneValidation, COLUMNS};
use shared::domain::{Language, PhoneSettings};
use shared::events::OtpRequested;
use shared::store::phone_validations;
use shared::{outbox, ObjectId};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The creates one statement may write together: one client, project, flow
/// and `force` (the limits are the flow's).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Group {
    client: ObjectId,
    project: ObjectId,
    flow: ObjectId,
    force: bool,
}

impl Group {
    pub fn client(&self) -> &ObjectId {
        &self.client
    }

    pub fn of(client: &ObjectId, new: &NewValidation) -> Self {
        Self {
            client: client.clone(),
            project: new.project.clone(),
            flow: new.flow.clone(),
            force: new.body.force.unwrap_or(false),
        }
    }
}

/// One create's own values, ready to bind, with its event.
pub struct NewRow {
    pub id: ObjectId,
    pub country_code: String,
    pub phone: String,
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
    /// ISO 3166-1 alpha-2 of the number's region, if known.
    region: Option<String>,
    /// Whether the fraud guard's blocks apply (the flow's guard is on and
    /// this is not one of its test numbers).
    guarded: bool,
    pub event: outbox::Prepared,
}

impl NewRow {
    pub fn new(new: &NewValidation, settings: &PhoneSettings) -> Result<Self, serde_json::Error> {
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
            // The request's, the flow's, else the number's country's (§14).
            language: body
                .language
                .or(settings.language)
                .unwrap_or_else(|| Language::for_phone(&new.phone))
                .as_str(),
            region: new.phone.region().map(str::to_owned),
            guarded: settings.fraud_guard != GuardMode::Off && settings.test_code(new.phone.e164()).is_none(),
        })
    }
}

/// The statement of `insert_many`: `$1`–`$17`, `$29` and `$30` are the
/// rows' own values as arrays, `$18`–`$28` what the group shares (client,
/// project, flow, limits). A row of a prefix (or calling code) the fraud
/// guard blocks is left out before anything is written, unless the number
/// is on the client's safe list.
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::timestamptz[], $8::text[], $9::jsonb[], $10::text[], $11::text[],
                                 $12::text[], $13::boolean[], $14::text[], $15::text[], $16::text[], $17::text[],
                                 $29::text[], $30::boolean[])
                AS i(id, country_code, phone, phone_gateway, validation_method, type, expires_at, name,
                     extra_params, redirect_url, webhook_url, identity_url, requires_2fa, ip_address,
                     language, message_id, payload, region, guarded)
         ), admitted AS (
            SELECT * FROM input i
             WHERE NOT i.guarded
                OR NOT EXISTS (SELECT 1 FROM fraud_blocks b
                                WHERE b.client_id = $18 AND b.prefix IN (i.country_code || left(i.phone, 3), i.country_code)
                                  AND b.lifted_at IS NULL AND b.until > now())
                OR EXISTS (SELECT 1 FROM safe_list s
                            WHERE s.client_id = $18 AND s.country_code = i.country_code AND s.phone = i.phone)
         ), window_ AS (
            INSERT INTO phone_send_windows AS w (client_id, country_code, phone, last_sent_at, sent_at)
            SELECT $18, country_code, phone, now(), ARRAY[now()] FROM admitted
            ON CONFLICT (client_id, country_code, phone) DO UPDATE
               SET last_sent_at = now(),
                   sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour') || now()
             WHERE ($21 OR w.last_sent_at <= now() - make_interval(secs => $22))
               AND cardinality(array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour')) < $23
            RETURNING country_code, phone, (xmax = 0) AS fresh
         ), v AS (
            INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone,
                phone_gateway, validation_method, type, otp_length, expires_at, name, phone_data, extra_params,
                redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language, max_attempts, region)
            SELECT i.id, $18, $19, $20, i.country_code, i.phone, i.phone_gateway, i.validation_method, i.type, $24,
                   coalesce(i.expires_at, now() + make_interval(secs => $25)), i.name, $26, i.extra_params,
                   i.redirect_url, i.webhook_url, i.identity_url, i.requires_2fa, i.ip_address, i.language, $27,
                   i.region
              FROM admitted i JOIN window_ w ON w.country_code = i.country_code AND w.phone = i.phone
            RETURNING {COLUMNS}
         ), o AS (
            INSERT INTO outbox (routing_key, message_id, payload)
            SELECT $28, i.message_id, i.payload::jsonb FROM v JOIN input i ON i.id = v.id
            RETURNING id, message_id
         )
         SELECT v.*, o.id AS outbox_id, w.fresh FROM v JOIN input i ON i.id = v.id
           JOIN o ON o.message_id = i.message_id
           JOIN window_ w ON w.country_code = v.country_code AND w.phone = v.phone"
    )
});

/// One written validation and its outbox row.
#[derive(sqlx::FromRow)]
pub struct Written {
    #[sqlx(flatten)]
    pub validation: PhoneValidation,
    pub outbox_id: i64,
    /// The first send ever to this phone (its ledger row is new): no older
    /// validation can be open.
    pub fresh: bool,
}

/// In one statement: records each send in its phone's ledger if the cooldown
/// and the hourly cap allow it, then inserts those validations and their
/// `otp.requested` events. Answers by validation id for the rows written;
/// a row a limit refused is absent. The phones must be distinct.
pub async fn insert_many(
    conn: &mut PgConnection,
    group: &Group,
    flow: &Flow,
    rows: &[NewRow],
) -> Result<HashMap<String, Written>, sqlx::Error> {
    let settings = &flow.settings.0;
    let owned = |f: fn(&NewRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let optional = |f: fn(&NewRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
    let payloads: Vec<&str> = rows.iter().map(|r| r.event.payload_text()).collect();
    let written: Vec<Written> = sqlx::query_as(&INSERT_SQL)
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
        .bind(optional(|r| r.region.as_deref()))
        .bind(rows.iter().map(|r| r.guarded).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    Ok(written
        .into_iter()
        .map(|row| (row.validation.id.to_string(), row))
        .collect())
}

/// A create written: the validation, its `otp.requested` event and the
/// `failed` events of the older validations of its phone it superseded.
pub struct Created {
    pub validation: PhoneValidation,
    pub events: Vec<outbox::OutboxMessage>,
}

/// A new code for a phone fails the client's older open validations of that
/// phone (as Twilio Verify cancels them), so only the newest code counts.
/// First sends to a phone are skipped: nothing older can be open. Runs
/// after the create statement (a crash in between leaves the older ones
/// open until they expire; the validate lookup takes the newest anyway).
pub async fn supersede_older(
    conn: &mut PgConnection,
    client: &ObjectId,
    written: &[&Written],
) -> Result<Vec<outbox::OutboxMessage>, sqlx::Error> {
    let repeated: Vec<&&Written> = written.iter().filter(|w| !w.fresh).collect();
    if repeated.is_empty() {
        return Ok(Vec::new());
    }
    let phones: Vec<(String, String)> = repeated
        .iter()
        .map(|w| (w.validation.country_code.clone(), w.validation.phone.clone()))
        .collect();
    let keep: Vec<ObjectId> = repeated.iter().map(|w| w.validation.id.clone()).collect();
    let mut tx = conn.begin().await?;
    let superseded = phone_validations::supersede(&mut tx, client, &phones, &keep).await?;
    tx.commit().await?;
    Ok(superseded)
}

/// A single create through `insert_many` (the same statement, so the limits
/// live in one place). `None` when a limit refused.
pub async fn insert_one(
    conn: &mut PgConnection,
    client: &ObjectId,
    new: &NewValidation,
    flow: &Flow,
) -> ApiResult<Option<Created>> {
    let row = NewRow::new(new, &flow.settings.0).map_err(anyhow::Error::from)?;
    let mut written = insert_many(conn, &Group::of(client, new), flow, std::slice::from_ref(&row)).await?;
    let Some(written) = written.remove(row.id.as_str()) else {
        return Ok(None);
    };
    let mut events = supersede_older(conn, client, &[&written]).await?;
    events.push(row.event.into_message(written.outbox_id));
    Ok(Some(Created {
        validation: written.validation,
        events,
    }))
}

/// The create statement, for the schema check.
pub fn statements() -> shared::db::Statements {
    vec![("create.insert_many".to_owned(), INSERT_SQL.clone())]
}
