//! Group commit for creates. In a burst, hundreds of creates wait at once;
//! one statement (and one commit) each makes PostgreSQL parse, plan, start an
//! executor and flush the WAL per request. Creates that arrive while the
//! previous group is being written are written together: one statement
//! updates the phones' send ledgers where the limits allow, inserts those
//! validations and their `otp.requested` events, and commits once.
//!
//! A request this path cannot settle on its own is answered `None`, and its
//! handler takes the one-at-a-time path (`create_once`), which says exactly
//! why: a limit refused it, its phone appears twice in the group, or the
//! group's statement failed.

use super::create::{Flow, NewValidation};
use shared::outbox::{self, OutboxMessage};
use shared::validation::{PhoneValidation, COLUMNS};
use shared::ObjectId;
use sqlx::types::Json;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The most creates in one statement.
const MAX_GROUP: usize = 256;
/// Groups written at once (each on its own connection).
const WRITERS: usize = 2;

type Created = (PhoneValidation, OutboxMessage);

/// One create, ready to bind.
pub struct Pending {
    /// Creates share a statement only under the same flow and `force`.
    key: (ObjectId, ObjectId, ObjectId, bool),
    flow: Arc<super::create::CachedFlow>,
    id: ObjectId,
    country_code: String,
    phone: String,
    gateway: String,
    method: String,
    kind: String,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    name: Option<String>,
    extra_params: Option<Json<serde_json::Value>>,
    redirect_url: Option<String>,
    webhook_url: Option<String>,
    identity_url: Option<String>,
    requires_2fa: bool,
    ip_address: Option<String>,
    language: String,
    event: outbox::Prepared,
    reply: oneshot::Sender<Option<Created>>,
}

pub struct GroupCommit {
    sender: mpsc::Sender<Pending>,
}

impl GroupCommit {
    pub fn start(pool: PgPool) -> Self {
        let (sender, receiver) = mpsc::channel::<Pending>(MAX_GROUP * 8);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            let (receiver, pool) = (receiver.clone(), pool.clone());
            tokio::spawn(async move {
                loop {
                    let mut taken = Vec::with_capacity(MAX_GROUP);
                    if receiver.lock().await.recv_many(&mut taken, MAX_GROUP).await == 0 {
                        return;
                    }
                    let mut groups: HashMap<(ObjectId, ObjectId, ObjectId, bool), Vec<Pending>> = HashMap::new();
                    for pending in taken {
                        groups.entry(pending.key.clone()).or_default().push(pending);
                    }
                    for group in groups.into_values() {
                        write(&pool, group).await;
                    }
                }
            });
        }
        Self { sender }
    }

    /// Writes the create with others; `None` when it must go one at a time.
    pub(super) async fn create(
        &self,
        client: &ObjectId,
        new: &NewValidation,
        flow: &Arc<super::create::CachedFlow>,
    ) -> Result<Option<Created>, sqlx::Error> {
        let body = &new.body;
        let settings = &flow.flow.settings.0;
        let id = ObjectId::new();
        let event = outbox::Prepared::new(&shared::events::OtpRequested::new(id.clone()))?;
        let (reply, created) = oneshot::channel();
        let pending = Pending {
            key: (
                client.clone(),
                new.project.clone(),
                new.flow.clone(),
                body.force.unwrap_or(false),
            ),
            flow: flow.clone(),
            id,
            country_code: new.phone.country().to_string(),
            phone: new.phone.national().to_owned(),
            gateway: body.phone_gateway.unwrap_or(settings.phone_gateway).as_str().to_owned(),
            method: new.method.as_str().to_owned(),
            kind: new.kind.as_str().to_owned(),
            expires_at: body.expires_at,
            name: body.name.clone(),
            extra_params: body.extra_params.clone().map(|p| Json(serde_json::Value::Object(p))),
            redirect_url: body.redirect_url.clone(),
            webhook_url: body.webhook_url.clone(),
            identity_url: body.identity_url.clone(),
            requires_2fa: body.requires_2fa.unwrap_or(false),
            ip_address: body.ip_address.clone(),
            language: body.language.unwrap_or(settings.language).as_str().to_owned(),
            event,
            reply,
        };
        if self.sender.send(pending).await.is_err() {
            return Ok(None);
        }
        Ok(created.await.unwrap_or(None))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    validation: PhoneValidation,
    outbox_id: i64,
}

/// Writes one group (same client, project, flow and `force`) and answers
/// every request in it.
async fn write(pool: &PgPool, group: Vec<Pending>) {
    // A phone twice in one statement would update its ledger row twice,
    // which PostgreSQL refuses: the second goes one at a time.
    let mut phones = HashSet::new();
    let (group, repeated): (Vec<Pending>, Vec<Pending>) = group
        .into_iter()
        .partition(|p| phones.insert((p.country_code.clone(), p.phone.clone())));
    for pending in repeated {
        let _ = pending.reply.send(None);
    }
    let Some(first) = group.first() else {
        return;
    };
    let (client, project, flow_id, force) = first.key.clone();
    let flow: &Flow = &first.flow.flow;
    let settings = &flow.settings.0;
    let column = |f: fn(&Pending) -> String| group.iter().map(f).collect::<Vec<String>>();
    let optional = |f: fn(&Pending) -> Option<String>| group.iter().map(f).collect::<Vec<Option<String>>>();
    let payloads: Result<Vec<&str>, sqlx::Error> = group.iter().map(|p| p.event.payload_text()).collect();
    let result = match payloads {
        Err(error) => Err(error),
        Ok(payloads) => {
            sqlx::query_as::<_, Row>(&format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                         $7::timestamptz[], $8::text[], $9::jsonb[], $10::text[], $11::text[],
                                         $12::text[], $13::boolean[], $14::text[], $15::text[], $16::text[],
                                         $17::text[])
                        AS i(id, country_code, phone, phone_gateway, validation_method, type, expires_at, name,
                             extra_params, redirect_url, webhook_url, identity_url, requires_2fa, ip_address,
                             language, message_id, payload)
                 ), window_ AS (
                    INSERT INTO phone_send_windows AS w (client_id, country_code, phone, last_sent_at, sent_at)
                    SELECT $18, country_code, phone, now(), ARRAY[now()] FROM input
                    ON CONFLICT (client_id, country_code, phone) DO UPDATE
                       SET last_sent_at = now(),
                           sent_at = array(SELECT t FROM unnest(w.sent_at) AS t WHERE t > now() - interval '1 hour')
                                     || now()
                     WHERE ($21 OR w.last_sent_at <= now() - make_interval(secs => $22))
                       AND cardinality(array(SELECT t FROM unnest(w.sent_at) AS t
                                              WHERE t > now() - interval '1 hour')) < $23
                    RETURNING country_code, phone
                 ), v AS (
                    INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone,
                        phone_gateway, validation_method, type, otp_length, expires_at, name, phone_data,
                        extra_params, redirect_url, webhook_url, identity_url, requires_2fa, ip_address, language,
                        max_attempts)
                    SELECT i.id, $18, $19, $20, i.country_code, i.phone, i.phone_gateway, i.validation_method,
                           i.type, $24, coalesce(i.expires_at, now() + make_interval(secs => $25)), i.name, $26,
                           i.extra_params, i.redirect_url, i.webhook_url, i.identity_url, i.requires_2fa,
                           i.ip_address, i.language, $27
                      FROM input i JOIN window_ w ON w.country_code = i.country_code AND w.phone = i.phone
                    RETURNING {COLUMNS}
                 ), o AS (
                    INSERT INTO outbox (routing_key, message_id, payload)
                    SELECT $28, i.message_id, i.payload::jsonb FROM v JOIN input i ON i.id = v.id
                    RETURNING id, message_id
                 )
                 SELECT v.*, o.id AS outbox_id
                   FROM v JOIN input i ON i.id = v.id JOIN o ON o.message_id = i.message_id"
            ))
            .bind(group.iter().map(|p| p.id.to_string()).collect::<Vec<_>>())
            .bind(column(|p| p.country_code.clone()))
            .bind(column(|p| p.phone.clone()))
            .bind(column(|p| p.gateway.clone()))
            .bind(column(|p| p.method.clone()))
            .bind(column(|p| p.kind.clone()))
            .bind(group.iter().map(|p| p.expires_at).collect::<Vec<_>>())
            .bind(optional(|p| p.name.clone()))
            .bind(group.iter().map(|p| p.extra_params.clone()).collect::<Vec<_>>())
            .bind(optional(|p| p.redirect_url.clone()))
            .bind(optional(|p| p.webhook_url.clone()))
            .bind(optional(|p| p.identity_url.clone()))
            .bind(group.iter().map(|p| p.requires_2fa).collect::<Vec<_>>())
            .bind(optional(|p| p.ip_address.clone()))
            .bind(column(|p| p.language.clone()))
            .bind(column(|p| p.event.message_id.clone()))
            .bind(payloads)
            .bind(&client)
            .bind(&project)
            .bind(&flow_id)
            .bind(force)
            .bind(f64::from(settings.resend_cooldown_seconds))
            .bind(i32::try_from(settings.max_sends_per_hour).unwrap_or(i32::MAX))
            .bind(i16::from(settings.otp_length))
            .bind(f64::from(settings.otp_expires_in_seconds))
            .bind(Json(serde_json::json!({ "title": flow.project_name })))
            .bind(i32::try_from(settings.max_attempts).unwrap_or(i32::MAX))
            .bind(first.event.routing_key)
            .fetch_all(pool)
            .await
        }
    };
    let mut written: HashMap<String, Row> = match result {
        Ok(rows) => rows.into_iter().map(|r| (r.validation.id.to_string(), r)).collect(),
        Err(error) => {
            tracing::warn!(%error, creates = group.len(), "group create failed; writing them one at a time");
            HashMap::new()
        }
    };
    for pending in group {
        let created = written
            .remove(pending.id.as_str())
            .map(|row| (row.validation, pending.event.into_message(row.outbox_id)));
        let _ = pending.reply.send(created);
    }
}
