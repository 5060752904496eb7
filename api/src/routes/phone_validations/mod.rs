//! Phone validations: create (and publish `otp.requested`), validate a code,
//! read and list (docs/contract.md §4.2–4.4).

pub mod create;
pub mod next_channel;
pub mod read;
pub mod stats;
pub mod validate;
