//! The create machinery behind `POST /v2/phone-validations`: the request as
//! checked (`request`), the flow it runs under (`flow_cache`), the one create
//! statement (`insert`) written alone or with the creates that arrive
//! meanwhile (`group_commit`), why the send limits refused (`send_limits`),
//! and `Idempotency-Key` replays (`idempotency`). The handler
//! (`routes/phone_validations/create.rs`) calls these; none of them imports
//! a route.

pub mod flow_cache;
pub mod group_commit;
pub mod idempotency;
pub mod insert;
pub mod request;
pub mod send_limits;

/// Every statement of the create machinery, for the schema check.
pub fn statements() -> shared::db::Statements {
    [
        flow_cache::statements(),
        idempotency::statements(),
        insert::statements(),
        send_limits::statements(),
    ]
    .concat()
}
