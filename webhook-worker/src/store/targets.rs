//! Who to deliver to and with which keys: the client's signing keys and
//! the flow's URL, read once for the events that arrive together.

use crate::signing::{InvalidSecret, SigningKey};
use secrecy::ExposeSecret;
use shared::webhook_secrets::{OpenError, WebhookSecretKeys};
use shared::ObjectId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TARGET: &str = "SELECT c.webhook_secret, c.previous_webhook_secret,
                COALESCE(c.previous_webhook_secret_expires_at > now(), false),
                f.phone->>'webhookUrl'
           FROM clients c
           LEFT JOIN project_flows f ON f.id = $2 AND f.client_id = c.id
          WHERE c.id = $1";

/// What a delivery needs besides the event.
pub struct Target {
    /// The flow's `webhookUrl` (the validation's own URL wins over it).
    pub flow_url: Option<String>,
    /// The current key, then the previous one while it is still valid.
    pub keys: Vec<SigningKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Secret(#[from] InvalidSecret),
    #[error(transparent)]
    Sealed(#[from] OpenError),
}

/// The client's signing keys (their secrets opened with `WEBHOOK_SECRET_KEY`)
/// and the flow's URL; `None` when the client is gone.
pub async fn load_target(
    pool: &PgPool,
    sealing: &WebhookSecretKeys,
    client: &ObjectId,
    flow: &ObjectId,
) -> Result<Option<Target>, LoadError> {
    let row: Option<(String, Option<String>, bool, Option<String>)> = sqlx::query_as(TARGET)
        .bind(client)
        .bind(flow)
        .fetch_optional(pool)
        .await?;
    let Some((current, previous, previous_valid, flow_url)) = row else {
        return Ok(None);
    };
    let client = client.to_string();
    let mut keys = vec![SigningKey::parse(sealing.open(&client, &current)?.expose_secret())?];
    if let (Some(previous), true) = (previous, previous_valid) {
        // A broken old secret must not stop deliveries signed with the new one.
        let opened = sealing.open(&client, &previous);
        if let Some(key) = opened
            .ok()
            .and_then(|secret| SigningKey::parse(secret.expose_secret()).ok())
        {
            keys.push(key);
        }
    }
    Ok(Some(Target { flow_url, keys }))
}

/// Targets loaded in the last `ttl`, per (client, flow): under load most
/// events of a flow arrive together, and one query serves them all. A
/// rotated secret or a changed flow URL is seen within `ttl` (the previous
/// secret keeps signing for hours, so nothing fails meanwhile).
pub struct TargetCache {
    ttl: Duration,
    sealing: WebhookSecretKeys,
    entries: Mutex<HashMap<TargetKey, (Instant, Arc<Target>)>>,
}

/// (client, flow).
type TargetKey = (ObjectId, ObjectId);

/// Past this many entries the cache starts over.
const MAX_CACHED_TARGETS: usize = 10_000;

impl TargetCache {
    pub fn new(ttl: Duration, sealing: WebhookSecretKeys) -> Self {
        Self {
            ttl,
            sealing,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The target as last loaded and when, however old, without touching the database.
    pub fn cached(&self, client: &ObjectId, flow: &ObjectId) -> Option<(Instant, Arc<Target>)> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&(client.clone(), flow.clone())).cloned()
    }

    /// The cached target, or a fresh one from the database.
    pub async fn get(
        &self,
        pool: &PgPool,
        client: &ObjectId,
        flow: &ObjectId,
    ) -> Result<Option<Arc<Target>>, LoadError> {
        if let Some((loaded, target)) = self.cached(client, flow) {
            if loaded.elapsed() < self.ttl {
                return Ok(Some(target));
            }
        }
        let Some(target) = load_target(pool, &self.sealing, client, flow).await? else {
            return Ok(None);
        };
        let target = Arc::new(target);
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_CACHED_TARGETS {
            entries.clear();
        }
        entries.insert((client.clone(), flow.clone()), (Instant::now(), target.clone()));
        Ok(Some(target))
    }
}

pub(super) fn statements() -> shared::db::Statements {
    [("webhooks.target", TARGET)]
        .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
        .into()
}
