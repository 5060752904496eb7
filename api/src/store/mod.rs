//! The API's SQL, one store per feature: a handler parses the request, calls
//! its store, and shapes the answer. `list` reads a client's rows (one by
//! id, or a filtered page) for the feature stores. The create machinery
//! (`crate::create`), the fraud guard (`crate::fraud`), the stats rollup
//! (`crate::stats`) and the login-token keys (`crate::login_token::store`)
//! hold their own statements beside the code that needs them; what moves a
//! validation's status is `shared::store`.
//!
//! Every statement is a `const` or a `static` built once, and `statements`
//! lists them all as PostgreSQL receives them, so a test prepares each one
//! against the migrated schema.

pub mod clients;
pub mod flows;
pub mod list;
pub mod next_channel;
pub mod projects;
pub mod safe_list;
pub mod validations;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
pub mod webhook_messages;

pub use shared::db::Statements;

/// Every statement the API holds.
pub fn statements() -> Statements {
    [
        clients::statements(),
        flows::statements(),
        next_channel::statements(),
        projects::statements(),
        safe_list::statements(),
        validations::statements(),
        webhook_deliveries::statements(),
        webhook_endpoints::statements(),
        webhook_messages::statements(),
        crate::create::statements(),
        crate::fraud::statements(),
        crate::stats::statements(),
        crate::login_token::store::statements(),
    ]
    .concat()
}
