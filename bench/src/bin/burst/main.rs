//! Burst benchmark: N creates fired at once against the release API, with
//! 1 or 2 release dispatcher processes sending through local provider
//! stand-ins. Reports the time from the first create to the last SMS,
//! create→SMS latency, errors, duplicates, SMS throughput and the CPU each
//! process used. Options add a second provider (Vonage), make Twilio fail a
//! share of requests (the circuit breaker's test), and have Twilio post a
//! signed status callback for every message (the callbacks' throughput).
//!
//!   cargo build --release -p api -p dispatcher
//!   cargo run --release -p bench --bin burst -- --count 10000 --concurrency 256 --dispatchers 1
//!   cargo run --release -p bench --bin burst -- --providers twilio,vonage --fail-ratio 0.3 --callbacks
//!   cargo run --release -p bench --bin burst -- --provider-latency-ms 300 --rate-limit-ratio 0.2
//!   cargo run --release -p bench --bin burst -- --webhook-endpoint   (every send writes its `sent` event)

mod report;
mod standins;

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::json;
use shared::ObjectId;
use standins::{Behaviour, Callbacks, StandIns};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the API believes providers reach it at (only signatures use it).
pub const PUBLIC_BASE_URL: &str = "https://otp.bench.example";
const TWILIO_TOKEN: &str = "bench-twilio-token";
const JWT_SECRET: &str = "bench-jwt-secret-bench-jwt-secret-0123";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    dispatchers: usize,
    #[arg(long, default_value = "target/release")]
    bin_dir: String,
    /// `SMS_PROVIDER` of the dispatchers: `twilio` or `twilio,vonage`.
    #[arg(long, default_value = "twilio")]
    providers: String,
    /// Share of Twilio's requests answered 500 (0 to 1, in tenths).
    #[arg(long, default_value_t = 0.0)]
    fail_ratio: f64,
    /// Twilio posts a signed `delivered` callback to the API for every message.
    #[arg(long)]
    callbacks: bool,
    /// The stand-ins answer each send after this many milliseconds (a real
    /// provider's API takes 150–400 ms); 0: at once.
    #[arg(long, default_value_t = 0)]
    provider_latency_ms: u64,
    /// Share of numbers whose first Twilio request is answered 429 with
    /// `Retry-After` (0 to 1, in tenths); their next request is accepted.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_ratio: f64,
    /// The `Retry-After` of those 429s, in whole seconds.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// The client has a webhook endpoint for every event type, so each send
    /// also writes its `phone_validation_sent` event (nothing delivers it).
    #[arg(long)]
    webhook_endpoint: bool,
}

/// The child processes, killed when the bench ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Setup {
    base: String,
    http: reqwest::Client,
    token: String,
    project: String,
    flow: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (database_url, pool) = testkit::database().await;
    let prefix = format!("bench.{}.", ObjectId::new());
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let callbacks = args.callbacks.then(|| Callbacks {
        url: format!("{base}/callbacks/twilio/status"),
        auth_token: TWILIO_TOKEN.into(),
        http: http.clone(),
        ok: Default::default(),
        failed: Default::default(),
        last: Default::default(),
    });
    let behaviour = Behaviour {
        fail_ratio: args.fail_ratio,
        latency: Duration::from_millis(args.provider_latency_ms),
        rate_limit_ratio: args.rate_limit_ratio,
        retry_after: Duration::from_secs(args.retry_after_secs.max(1)),
    };
    let stand_ins = StandIns::new(behaviour, callbacks);
    let providers_url = stand_ins.clone().serve().await?;
    let children = start_services(&args, &database_url, &prefix, api_port, &providers_url)?;
    let setup = prepare(&args, &pool, base, http).await?;
    run(&args, &setup, &stand_ins).await?;
    report::report_dispatchers(args.dispatchers, &setup.http).await?;
    drop(children);
    testkit::delete_namespace(
        &shared::amqp::Topology::new(prefix),
        &[
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(120),
            Duration::from_secs(10),
        ],
    )
    .await;
    Ok(())
}

/// The release API and dispatchers, with the services' own pool sizes
/// unless `BENCH_API_POOL` / `BENCH_DISPATCHER_POOL` say otherwise.
fn start_services(
    args: &Args,
    database_url: &str,
    prefix: &str,
    api_port: u16,
    providers_url: &str,
) -> anyhow::Result<Children> {
    let env = |cmd: &mut Command| {
        cmd.env("DATABASE_URL", database_url)
            .env("AMQP_URL", testkit::amqp_url())
            .env("AMQP_PREFIX", prefix)
            .env("JWT_SECRET", JWT_SECRET)
            .env("OTP_PEPPER", "bench-pepper-bench-pepper-bench-pepper")
            .env("OTP_CODE_KEY", "bench-code-key-bench-code-key-bench-code")
            .env("WEBHOOK_SECRET_KEY", testkit::api::WEBHOOK_SECRET_KEY)
            .env("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
            .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
    };
    let mut children = Children(Vec::new());
    let mut api = Command::new(format!("{}/api", args.bin_dir));
    env(&mut api);
    api.env("API_ADDR", format!("127.0.0.1:{api_port}"));
    api.env("OPS_ADDR", format!("127.0.0.1:{API_OPS_PORT}"));
    if let Ok(pool) = std::env::var("BENCH_API_POOL") {
        api.env("DATABASE_MAX_CONNECTIONS", pool);
    }
    children.0.push(api.spawn().context("start api")?);
    for n in 0..args.dispatchers {
        let mut dispatcher = Command::new(format!("{}/dispatcher", args.bin_dir));
        env(&mut dispatcher);
        if let Ok(pool) = std::env::var("BENCH_DISPATCHER_POOL") {
            dispatcher.env("DATABASE_MAX_CONNECTIONS", pool);
        }
        dispatcher
            .env("HEALTH_ADDR", format!("127.0.0.1:{}", 19_191 + n))
            .env("SMS_PROVIDER", &args.providers)
            .env("TWILIO_BASE_URL", providers_url)
            .env("TWILIO_ACCOUNT_SID", "ACbench")
            .env("TWILIO_FROM", "+15005550006")
            .env("VONAGE_BASE_URL", providers_url)
            .env("VONAGE_API_KEY", "bench")
            .env("VONAGE_API_SECRET", "bench-secret")
            .env("VONAGE_FROM", "Bench");
        children.0.push(dispatcher.spawn().context("start dispatcher")?);
    }
    Ok(children)
}

/// The API's `OPS_ADDR` port, below the dispatchers' (19191 and up).
const API_OPS_PORT: u16 = 19_190;

/// A client, a project and a flow, once the services are ready.
async fn prepare(args: &Args, pool: &sqlx::PgPool, base: String, http: reqwest::Client) -> anyhow::Result<Setup> {
    let ready = |url: String| {
        let http = http.clone();
        async move {
            testkit::eventually(Duration::from_secs(30), &format!("{url} to be ready"), || async {
                let answer = http.get(&url).send().await.ok()?;
                answer.status().is_success().then_some(())
            })
            .await
        }
    };
    ready(format!("http://127.0.0.1:{API_OPS_PORT}/ready")).await;
    for n in 0..args.dispatchers {
        ready(format!("http://127.0.0.1:{}/ready", 19_191 + n)).await;
    }
    let client = testkit::create_client(pool, "bench").await;
    if args.webhook_endpoint {
        testkit::webhook_endpoints::Endpoint::at_rest(&client)
            .insert(pool)
            .await;
    }
    let token = api::auth::Jwt::new(&SecretString::from(JWT_SECRET)).client_token(&client, 0, 1)?;
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let project: serde_json::Value = post("/v2/projects", json!({"name": "Bench"})).await?.json().await?;
    let project = project["data"]["_id"].as_str().context("project id")?.to_owned();
    let flow = json!({"project": project, "type": "login", "phone": {"resendCooldownSeconds": 0}});
    let flow: serde_json::Value = post("/v2/project-flows", flow).await?.json().await?;
    let flow = flow["data"]["_id"].as_str().context("flow id")?.to_owned();
    Ok(Setup {
        base,
        http,
        token,
        project,
        flow,
    })
}

/// Fires the burst, waits for every accepted code at a provider, reports.
async fn run(args: &Args, setup: &Setup, stand_ins: &StandIns) -> anyhow::Result<()> {
    println!(
        "burst: {} creates, {} connections, {} dispatcher(s), providers {}, Twilio failing {:.0} %, \
         provider latency {} ms, Twilio throttling {:.0} % at first (Retry-After {} s){}",
        args.count,
        args.concurrency,
        args.dispatchers,
        args.providers,
        args.fail_ratio * 100.0,
        args.provider_latency_ms,
        args.rate_limit_ratio * 100.0,
        args.retry_after_secs.max(1),
        if args.callbacks { ", with status callbacks" } else { "" }
    );
    // Requests are built before the clock starts, so the load generator
    // spends its share of the machine on sending them, not on JSON.
    let url = format!("{}/v2/phone-validations", setup.base);
    let bearer = format!("Bearer {}", setup.token);
    let bodies: Vec<(String, bytes::Bytes)> = (0..args.count)
        .map(|n| {
            let phone = format!("6{n:07}");
            let body = json!({"project": setup.project, "projectFlow": setup.flow, "countryCode": "+507",
                "phone": phone, "validationMethod": "verificationCode", "type": "login"});
            (format!("+507{phone}"), bytes::Bytes::from(body.to_string()))
        })
        .collect();
    let create_latency = std::sync::Mutex::new(Vec::with_capacity(args.count));
    // What each refused or failed create got: a status and error code, or the transport error.
    let refusals = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let cpu_before = bench::cpu_by_command();
    let started = Instant::now();
    let results: Vec<(String, Instant, bool)> = futures_util::stream::iter(bodies)
        .map(|(to, body)| {
            let (http, url, bearer, create_latency) = (&setup.http, &url, &bearer, &create_latency);
            let refusals = &refusals;
            async move {
                let sent = Instant::now();
                let answer = http
                    .post(url)
                    .header("authorization", bearer)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = match answer {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let code = body["message"].as_str().unwrap_or("").to_owned();
                        if let Ok(mut seen) = refusals.lock() {
                            *seen.entry(format!("{status} {code}")).or_default() += 1;
                        }
                        false
                    }
                    Err(error) => {
                        let kind = if error.is_timeout() {
                            "timeout"
                        } else if error.is_connect() {
                            "connect"
                        } else {
                            "transport"
                        };
                        if let Ok(mut seen) = refusals.lock() {
                            *seen.entry(kind.to_owned()).or_default() += 1;
                        }
                        false
                    }
                };
                if let Ok(mut latencies) = create_latency.lock() {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                (to, sent, ok)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let creates_done = started.elapsed();
    let accepted = results.iter().filter(|(_, _, ok)| *ok).count();
    report::wait_for_codes(stand_ins, accepted).await;
    let cpu_after = bench::cpu_by_command();
    println!(
        "creates: {accepted} accepted, {} errors, all answered in {:.2} s ({:.0}/s)",
        args.count - accepted,
        creates_done.as_secs_f64(),
        args.count as f64 / creates_done.as_secs_f64()
    );
    let refusals = refusals.into_inner().unwrap_or_default();
    if !refusals.is_empty() {
        println!("create errors: {refusals:?}");
    }
    let (p50, p99, max) = bench::percentiles(create_latency.into_inner().unwrap_or_default());
    println!("create latency: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    report::report_codes(stand_ins, &results, started, accepted);
    bench::print_cpu("CPU used during the burst", &cpu_before, &cpu_after);
    if let Some(callbacks) = &stand_ins.callbacks {
        report::report_callbacks(callbacks, stand_ins, started).await;
    }
    Ok(())
}
