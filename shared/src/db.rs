//! The PostgreSQL pool and the embedded migrations.

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Statements by name, as sent to PostgreSQL: what each store lists (its
/// `statements()`) so the tests prepare every one against the migrated
/// schema, and a renamed column fails there first.
pub type Statements = Vec<(String, String)>;

const PING: &str = "SELECT 1";

/// `migrations/` at the workspace root, compiled into every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool; fails if the database cannot be reached now.
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose_secret())?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Whether the database answers a trivial query.
pub async fn is_reachable(pool: &PgPool) -> bool {
    sqlx::query(PING).execute(pool).await.is_ok()
}

pub fn statements() -> Statements {
    vec![("db.ping".to_owned(), PING.to_owned())]
}
