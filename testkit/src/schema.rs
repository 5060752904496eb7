//! Every SQL statement the workspace holds (each store's `statements()`),
//! and preparing them against a database: PostgreSQL parses, resolves every
//! table and column, and plans each one, so a statement that no longer fits
//! the migrated schema is found without running it.

use shared::db::Statements;
use sqlx::{Executor, PgPool};

/// Every statement of `shared`, the API, the dispatcher and the webhook worker.
pub fn statements() -> Statements {
    [
        shared::store::statements(),
        api::store::statements(),
        dispatcher::store::statements(),
        webhook_worker::store::statements(),
    ]
    .concat()
}

/// The statements `pool`'s database refuses to prepare, each with the error.
pub async fn unprepared(pool: &PgPool, statements: &Statements) -> Vec<(String, String)> {
    let mut conn = pool.acquire().await.expect("a connection to the test database");
    let mut refused = Vec::new();
    for (name, sql) in statements {
        if let Err(error) = (&mut *conn).prepare(sql.as_str()).await {
            refused.push((name.clone(), error.to_string()));
        }
    }
    refused
}
