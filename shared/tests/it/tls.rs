//! TLS to PostgreSQL: `DATABASE_URL` with `sslmode=require` connects over
//! TLS, and `sslmode=verify-full` refuses a server whose certificate no
//! trusted root signed. Needs a server with `ssl = on` (Debian's PostgreSQL
//! ships one, with its self-signed "snakeoil" certificate); against one
//! without, the test says so and checks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use secrecy::SecretString;

fn url(sslmode: &str) -> SecretString {
    SecretString::from(format!("{}/postgres?sslmode={sslmode}", testkit::server_url()))
}

#[tokio::test]
async fn sslmode_require_connects_over_tls_and_verify_full_checks_the_certificate() {
    let plain = shared::db::connect(&url("disable"), 1).await.expect("PostgreSQL is up");
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&plain).await.unwrap();
    if ssl != "on" {
        eprintln!("this PostgreSQL has ssl = off: TLS not checked");
        return;
    }

    let encrypted = shared::db::connect(&url("require"), 1)
        .await
        .expect("sslmode=require connects (sqlx built with TLS)");
    let over_tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&encrypted)
        .await
        .unwrap();
    assert!(over_tls, "the connection is encrypted");

    // The test server's certificate is self-signed: verify-full must refuse it.
    let refused = shared::db::connect(&url("verify-full"), 1).await;
    let error = refused.expect_err("an untrusted certificate is refused").to_string();
    assert!(
        !error.contains("without TLS support"),
        "sqlx must be built with TLS: {error}"
    );
}
