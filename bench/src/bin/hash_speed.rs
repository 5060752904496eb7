//! How long one stored-code hash takes at each bcrypt cost, on one thread:
//! the `bcrypt` crate one code at a time, and `OtpHasher::hash_many` with
//! `OtpHasher::LANES` codes interleaved (what the dispatcher does under load).
//! The numbers behind `OTP_BCRYPT_COST`'s default.
//!
//!   cargo run --release -p bench --bin hash_speed

use secrecy::SecretString;
use shared::otp::{OtpCode, OtpHasher};
use std::time::Instant;

fn main() {
    let id = "674de8df21c72be3cc42b8a7";
    for cost in 4..=8u32 {
        let hasher = OtpHasher::new(SecretString::from("pepper"), cost);
        let rounds = 400 >> (cost - 4);
        let deriver = shared::otp::CodeDeriver::new(secrecy::SecretString::from("bench-code-key"));
        let codes: Vec<OtpCode> = (0..rounds).map(|n| deriver.code(&format!("{n:024}"), 6)).collect();

        let started = Instant::now();
        for code in &codes {
            let _ = bcrypt::hash(format!("{id}:{}", code.expose()), cost);
        }
        let crate_each = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);

        let started = Instant::now();
        for code in &codes {
            let _ = hasher.hash(id, code);
        }
        let single_each = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);

        let batch: Vec<(&str, &OtpCode)> = codes.iter().map(|c| (id, c)).collect();
        let started = Instant::now();
        for chunk in batch.chunks(OtpHasher::LANES) {
            let _ = hasher.hash_many(chunk);
        }
        let batched_each = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);

        println!(
            "cost {cost}: bcrypt crate {crate_each:.3} ms, OtpHasher one at a time {single_each:.3} ms, \
             {} at a time {batched_each:.3} ms per hash ({:.0} hashes/s per core, {:.1}x the crate)",
            OtpHasher::LANES,
            1000.0 / batched_each,
            crate_each / batched_each
        );
    }
}
