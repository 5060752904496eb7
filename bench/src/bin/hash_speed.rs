//! How long one stored-code hash takes at each bcrypt cost, single-threaded:
//! the number behind `OTP_BCRYPT_COST`'s default.
//!
//!   cargo run --release -p bench --bin hash_speed

use secrecy::SecretString;
use shared::otp::{OtpCode, OtpHasher};
use std::time::Instant;

fn main() {
    for cost in 4..=8u32 {
        let hasher = OtpHasher::new(SecretString::from("pepper"), cost);
        let rounds = 200 >> (cost - 4);
        let started = Instant::now();
        for _ in 0..rounds {
            let code = OtpCode::generate(6);
            let _ = hasher.hash("674de8df21c72be3cc42b8a7", &code);
        }
        let each = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
        println!(
            "cost {cost}: {each:.2} ms per hash, {:.0} hashes/s per core",
            1000.0 / each
        );
    }
}
