//! Endpoints' signing keys: their sealed secrets (the endpoint id as
//! associated data) opened once and kept while the stored values stay the
//! same, so a rotation is seen by the next claim.

use crate::signing::SigningKey;
use crate::store::ClaimedDelivery;
use secrecy::ExposeSecret;
use shared::webhook_secrets::WebhookSecretKeys;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Past this many endpoints the cache starts over.
const MAX_CACHED: usize = 10_000;

type Keys = Arc<Vec<SigningKey>>;

/// The stored values the keys were opened from.
type Sealed = (String, Option<String>);

pub(super) struct KeyCache {
    sealing: WebhookSecretKeys,
    entries: Mutex<HashMap<String, (Sealed, Keys)>>,
}

impl KeyCache {
    pub(super) fn new(sealing: WebhookSecretKeys) -> Self {
        Self {
            sealing,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The current key, then the previous one while the rotation's overlap
    /// lasts. `Err` says why the endpoint cannot be signed for (never the secret).
    pub(super) fn keys(&self, row: &ClaimedDelivery) -> Result<Keys, String> {
        let previous = row.previous_secret.clone().filter(|_| row.previous_valid);
        let sealed = (row.secret.clone(), previous);
        {
            let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((stored, keys)) = entries.get(&row.endpoint_id) {
                if *stored == sealed {
                    return Ok(keys.clone());
                }
            }
        }
        let open = |stored: &str| -> Result<SigningKey, String> {
            let secret = self
                .sealing
                .open(&row.endpoint_id, stored)
                .map_err(|error| format!("the endpoint's secret cannot be opened: {error}"))?;
            SigningKey::parse(secret.expose_secret()).map_err(|error| error.to_string())
        };
        let mut keys = vec![open(&sealed.0)?];
        if let Some(previous) = &sealed.1 {
            // A broken old secret must not stop deliveries signed with the new one.
            if let Ok(key) = open(previous) {
                keys.push(key);
            }
        }
        let keys = Arc::new(keys);
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(row.endpoint_id.clone(), (sealed, keys.clone()));
        Ok(keys)
    }
}
