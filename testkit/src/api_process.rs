//! The API binary as a child process, configured by its environment (the
//! HTTP server's timeouts and limits), for tests that need the real binary.

use crate::api::{create_client, JWT_SECRET, PEPPER};
use crate::infra;
use api::auth::Jwt;
use secrecy::SecretString;
use sqlx::PgPool;
use std::time::Duration;

/// The API binary as a child process, against a fresh database and with no
/// broker (`AMQP_URL` points at a closed port: HTTP is served all the same),
/// for tests of what its environment configures: timeouts, limits.
pub struct ApiProcess {
    pub running: crate::process::Running,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// `OPS_ADDR`, `127.0.0.1:<port>`: `/ready`, `/metrics`.
    pub ops_addr: String,
    pub pool: PgPool,
    pub token: String,
}

impl ApiProcess {
    /// Starts `binary` (`env!("CARGO_BIN_EXE_api")`) with `extra` variables
    /// and waits until it answers `/health`.
    pub async fn start(binary: &str, extra: &[(&str, String)]) -> Self {
        let (database_url, pool) = infra::database().await;
        let port = crate::process::free_port();
        let addr = format!("127.0.0.1:{port}");
        let ops_addr = format!("127.0.0.1:{}", crate::process::free_port());
        let mut env = vec![
            ("DATABASE_URL", database_url),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
            ("API_ADDR", addr.clone()),
            ("OPS_ADDR", ops_addr.clone()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("OTP_PEPPER", PEPPER.to_owned()),
            // Seals the stored login-token keys.
            ("WEBHOOK_SECRET_KEY", crate::api::WEBHOOK_SECRET_KEY.to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let running = crate::process::Running::start(binary, &env);
        let http = reqwest::Client::new();
        infra::eventually(Duration::from_secs(20), "the API to answer /health", || async {
            let health = http.get(format!("http://{addr}/health")).send().await.ok()?;
            health.status().is_success().then_some(())
        })
        .await;
        let client = create_client(&pool, "Acme").await;
        let token = Jwt::new(&SecretString::from(JWT_SECRET))
            .client_token(&client, 0, 1)
            .expect("a token");
        Self {
            running,
            addr,
            ops_addr,
            pool,
            token,
        }
    }
}
