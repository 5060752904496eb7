//! Group commit for creates. In a burst, hundreds of creates wait at once;
//! one statement (and one commit) each makes PostgreSQL parse, plan, start an
//! executor and flush the WAL per request. Creates that arrive while the
//! previous group is being written are written together by `insert_many`,
//! the same statement a single create uses, and commit once.
//!
//! A request this path cannot settle on its own is answered `None`, and its
//! handler takes the one-at-a-time path (`create_once`), which says exactly
//! why: a limit refused it, its phone appears twice in the group, or the
//! group's statement failed.

use super::flow_cache::CachedFlow;
use super::insert::{insert_many, supersede_older, Created, Group, NewRow};
use super::request::NewValidation;
use shared::outbox::Relay;
use shared::ObjectId;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The most creates in one statement.
const MAX_GROUP: usize = 256;
/// Groups written at once (each on its own connection).
const WRITERS: usize = 2;

/// A create waiting for its group.
struct Pending {
    group: Group,
    flow: Arc<CachedFlow>,
    row: NewRow,
    reply: oneshot::Sender<Option<Created>>,
}

pub struct GroupCommit {
    sender: mpsc::Sender<Pending>,
}

impl GroupCommit {
    pub fn start(pool: PgPool, relay: Relay) -> Self {
        let (sender, receiver) = mpsc::channel::<Pending>(MAX_GROUP * 8);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            let (receiver, pool, relay) = (receiver.clone(), pool.clone(), relay.clone());
            tokio::spawn(async move {
                loop {
                    let mut taken = Vec::with_capacity(MAX_GROUP);
                    if receiver.lock().await.recv_many(&mut taken, MAX_GROUP).await == 0 {
                        return;
                    }
                    let mut groups: HashMap<Group, Vec<Pending>> = HashMap::new();
                    for pending in taken {
                        groups.entry(pending.group.clone()).or_default().push(pending);
                    }
                    for group in groups.into_values() {
                        write(&pool, &relay, group).await;
                    }
                }
            });
        }
        Self { sender }
    }

    /// Writes the create with others; `None` when it must go one at a time.
    pub async fn create(
        &self,
        client: &ObjectId,
        new: &NewValidation,
        flow: &Arc<CachedFlow>,
    ) -> Result<Option<Created>, sqlx::Error> {
        let (reply, created) = oneshot::channel();
        let pending = Pending {
            group: Group::of(client, new),
            flow: flow.clone(),
            row: NewRow::new(new, &flow.flow.settings.0).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            reply,
        };
        if self.sender.send(pending).await.is_err() {
            return Ok(None);
        }
        Ok(created.await.unwrap_or(None))
    }
}

/// Writes one group (same client, project, flow and `force`) and answers
/// every request in it.
async fn write(pool: &PgPool, relay: &Relay, pending: Vec<Pending>) {
    // A phone twice in one statement would update its ledger row twice,
    // which PostgreSQL refuses: the second goes one at a time.
    let mut phones = HashSet::new();
    let (pending, repeated): (Vec<Pending>, Vec<Pending>) = pending
        .into_iter()
        .partition(|p| phones.insert((p.row.country_code.clone(), p.row.phone.clone())));
    for p in repeated {
        let _ = p.reply.send(None);
    }
    let Some(first) = pending.first() else {
        return;
    };
    let (group, flow) = (first.group.clone(), first.flow.clone());
    let (rows, replies): (Vec<NewRow>, Vec<_>) = pending.into_iter().map(|p| (p.row, p.reply)).unzip();
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, creates = rows.len(), "no connection for a group; writing them one at a time");
            return;
        }
    };
    let mut written = insert_many(&mut conn, &group, &flow.flow, &rows)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, creates = rows.len(), "group create failed; writing them one at a time");
            HashMap::new()
        });
    let all: Vec<_> = written.values().collect();
    match supersede_older(&mut conn, group.client(), &all).await {
        Ok(superseded) => relay.publish_soon(superseded),
        Err(error) => tracing::warn!(%error, "could not supersede older validations; they stay open until they expire"),
    }
    for (row, reply) in rows.into_iter().zip(replies) {
        let created = written.remove(row.id.as_str()).map(|written| Created {
            validation: written.validation,
            events: vec![row.event.into_message(written.outbox_id)],
        });
        let _ = reply.send(created);
    }
}
