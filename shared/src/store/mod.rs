//! The statements of the domain that write events: a floor above `domain`
//! (types and pure rules), `events` and `outbox`, so the domain imports
//! neither. `phone_validations` moves the status machine; `receipts`
//! records what providers report, and the failovers that follow;
//! `lifecycle` is the SQL with which both write the lifecycle events of
//! webhook endpoints (sent, delivered, undelivered); `fraud` and
//! `rate_limits` are the send limits the API and the dispatcher both apply.

pub mod fraud;
pub mod lifecycle;
pub mod phone_validations;
pub mod rate_limits;
pub mod receipts;

/// Every statement `shared` holds, for the schema check.
pub fn statements() -> crate::db::Statements {
    [
        phone_validations::statements(),
        receipts::statements(),
        fraud::statements(),
        rate_limits::statements(),
        crate::outbox::statements(),
        crate::webhook_secrets::statements(),
        crate::db::statements(),
    ]
    .concat()
}
