//! What every handler can reach: the pools, the broker and relay, the keys,
//! and the create machinery's caches (`AppState`, built by `lib.rs`).

use crate::auth::{Authenticates, Jwt, TokenVersions};
use crate::{config, create, login_token};
use shared::amqp::Broker;
use shared::otp::OtpHasher;
use shared::outbox::Relay;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub broker: Broker,
    pub relay: Relay,
    pub jwt: Jwt,
    /// Each client's current token version (revocation), briefly cached.
    pub token_versions: TokenVersions,
    /// Signs end users' login tokens with the shared stored keys (or
    /// `LOGIN_TOKEN_KEY`); their public keys are the JWKS.
    pub login_tokens: login_token::LoginTokens,
    pub hasher: OtpHasher,
    /// Bounds concurrent bcrypt checks to the cores, so a guessing burst
    /// cannot starve the runtime's blocking pool.
    pub bcrypt_slots: Arc<Semaphore>,
    /// Flow settings recently read by creates.
    pub flows: create::flow_cache::FlowCache,
    /// What status callbacks are checked with.
    pub callbacks: Arc<config::CallbackConfig>,
    /// Writes concurrent creates together.
    pub creates: Arc<create::group_commit::GroupCommit>,
    /// Webhook endpoints: secrets' sealing keys, URL rules, rotation overlap.
    pub webhooks: Arc<config::WebhookConfig>,
}

impl Authenticates for AppState {
    fn jwt(&self) -> &Jwt {
        &self.jwt
    }

    fn token_versions(&self) -> &TokenVersions {
        &self.token_versions
    }
}
