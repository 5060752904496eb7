//! Burst benchmark (dispatcher issue): N creates fired at once against the
//! release API, with 1 or 2 release dispatcher processes sending through a
//! fast local Twilio stand-in. Reports the time from the first create to the
//! last SMS, create→SMS latency, errors, duplicates and SMS throughput.
//!
//!   cargo build --release -p api -p dispatcher
//!   cargo run --release -p bench --bin burst -- --count 10000 --concurrency 256 --dispatchers 1

use anyhow::Context;
use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json, Router};
use clap::Parser;
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::json;
use shared::ObjectId;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

/// Every SMS request the stand-in received, and how many distinct phones.
#[derive(Default)]
struct Received {
    all: Vec<(String, Instant)>,
    phones: std::collections::HashSet<String>,
}

type Arrivals = Arc<Mutex<Received>>;

async fn twilio(
    State(arrivals): State<Arrivals>,
    Form(form): Form<HashMap<String, String>>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let to = form.get("To").cloned().unwrap_or_default();
    if let Ok(mut received) = arrivals.lock() {
        received.all.push((to.clone(), Instant::now()));
        received.phones.insert(to);
    }
    (
        axum::http::StatusCode::CREATED,
        Json(json!({"sid": format!("SM{}", ObjectId::new()), "status": "queued"})),
    )
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (database_url, pool) = testkit::database().await;
    let prefix = format!("bench.{}.", ObjectId::new());

    let arrivals: Arrivals = Arc::new(Mutex::new(Received::default()));
    let stand_in = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let twilio_url = format!("http://{}", stand_in.local_addr()?);
    let app = Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(stand_in, app).await });

    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env = |cmd: &mut Command| {
        cmd.env("DATABASE_URL", &database_url)
            .env("AMQP_URL", testkit::amqp_url())
            .env("AMQP_PREFIX", &prefix)
            .env("JWT_SECRET", "bench-jwt")
            .env("OTP_PEPPER", "bench-pepper")
            .env("OTP_CODE_KEY", "bench-code-key")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
    };
    let mut children = Children(Vec::new());
    let mut api = Command::new(format!("{}/api", args.bin_dir));
    env(&mut api);
    api.env("API_ADDR", format!("127.0.0.1:{api_port}"));
    // Pool sizes are the services' defaults unless BENCH_API_POOL /
    // BENCH_DISPATCHER_POOL say otherwise.
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
            .env("SMS_PROVIDER", "twilio")
            .env("TWILIO_BASE_URL", &twilio_url)
            .env("TWILIO_ACCOUNT_SID", "ACbench")
            .env("TWILIO_AUTH_TOKEN", "bench")
            .env("TWILIO_FROM", "+15005550006");
        children.0.push(dispatcher.spawn().context("start dispatcher")?);
    }

    let base = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    testkit::eventually(Duration::from_secs(30), "the API to be ready", || async {
        http.get(format!("{base}/ready"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    let client = ObjectId::new();
    sqlx::query("INSERT INTO clients (id, name, webhook_secret) VALUES ($1, 'bench', 'whsec_YmVuY2g=')")
        .bind(&client)
        .execute(&pool)
        .await?;
    let token = api::auth::Jwt::new(&SecretString::from("bench-jwt")).client_token(&client, 1)?;
    let project: serde_json::Value = http
        .post(format!("{base}/v2/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": "Bench"}))
        .send()
        .await?
        .json()
        .await?;
    let project = project["data"]["_id"].as_str().context("project id")?.to_owned();
    let flow: serde_json::Value = http
        .post(format!("{base}/v2/project-flows"))
        .bearer_auth(&token)
        .json(&json!({"project": project, "type": "login", "phone": {"resendCooldownSeconds": 0}}))
        .send()
        .await?
        .json()
        .await?;
    let flow = flow["data"]["_id"].as_str().context("flow id")?.to_owned();
    // The dispatchers are connected (and have declared their tiers) before the burst.
    for n in 0..args.dispatchers {
        testkit::eventually(Duration::from_secs(30), "the dispatchers to be ready", || async {
            http.get(format!("http://127.0.0.1:{}/ready", 19_191 + n))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
    }

    println!(
        "burst: {} creates, {} connections, {} dispatcher(s)",
        args.count, args.concurrency, args.dispatchers
    );
    // Requests are built before the clock starts, so the load generator
    // spends its share of the machine on sending them, not on JSON.
    let url = format!("{base}/v2/phone-validations");
    let bearer = format!("Bearer {token}");
    let bodies: Vec<(String, bytes::Bytes)> = (0..args.count)
        .map(|n| {
            let phone = format!("6{n:07}");
            let body = json!({"project": project, "projectFlow": flow, "countryCode": "+507", "phone": phone,
                "validationMethod": "verificationCode", "type": "login"});
            (format!("+507{phone}"), bytes::Bytes::from(body.to_string()))
        })
        .collect();
    let cpu_before = bench::cpu_by_command();
    let started = Instant::now();
    let results: Vec<(String, Instant, bool)> = futures_util::stream::iter(bodies)
        .map(|(to, body)| {
            let (http, url, bearer) = (&http, &url, &bearer);
            async move {
                let sent = Instant::now();
                let ok = http
                    .post(url)
                    .header("authorization", bearer)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                (to, sent, ok)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let creates_done = started.elapsed();
    let errors = results.iter().filter(|(_, _, ok)| !ok).count();
    let accepted = args.count - errors;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let distinct = arrivals.lock().map(|a| a.phones.len()).unwrap_or(0);
        if distinct >= accepted || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = bench::cpu_by_command();
    let arrivals = arrivals.lock().map(|a| a.all.clone()).unwrap_or_default();
    let created_at: HashMap<&str, Instant> = results.iter().map(|(to, at, _)| (to.as_str(), *at)).collect();
    let mut first_arrival: HashMap<&str, Instant> = HashMap::new();
    for (to, at) in &arrivals {
        first_arrival.entry(to.as_str()).or_insert(*at);
    }
    let latencies: Vec<f64> = first_arrival
        .iter()
        .filter_map(|(to, at)| created_at.get(to).map(|c| at.duration_since(*c).as_secs_f64() * 1000.0))
        .collect();
    let (p50, p99, max) = bench::percentiles(latencies);
    let first_sms = arrivals.iter().map(|(_, at)| *at).min();
    let last_sms = arrivals.iter().map(|(_, at)| *at).max();
    let total = last_sms.map(|l| l.duration_since(started)).unwrap_or_default();
    let sms_window = match (first_sms, last_sms) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "creates: {accepted} accepted, {errors} errors, all answered in {:.2} s ({:.0}/s)",
        creates_done.as_secs_f64(),
        args.count as f64 / creates_done.as_secs_f64()
    );
    println!(
        "SMS: {} distinct of {accepted}, {} duplicates",
        first_arrival.len(),
        arrivals.len() - first_arrival.len()
    );
    println!("first create -> last SMS: {:.2} s", total.as_secs_f64());
    println!("create -> SMS latency: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    println!(
        "dispatch throughput: {:.0} SMS/s (first to last SMS)",
        first_arrival.len() as f64 / sms_window.max(0.001)
    );
    let cpu = bench::cpu_used(&cpu_before, &cpu_after);
    println!(
        "CPU used during the burst: {:.1} s in all; {}",
        cpu.iter().map(|(_, t)| t).sum::<f64>(),
        cpu.iter()
            .map(|(comm, t)| format!("{comm} {t:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for n in 0..args.dispatchers {
        let metrics = http
            .get(format!("http://127.0.0.1:{}/metrics", 19_191 + n))
            .send()
            .await?
            .text()
            .await?;
        for line in metrics.lines().filter(|l| l.contains("_sum") || l.contains("_count")) {
            println!("dispatcher {n}: {line}");
        }
    }
    drop(children);
    if let Ok(channel) = testkit::amqp().await.create_channel().await {
        let topology = shared::amqp::Topology::new(prefix.clone());
        let _ = topology.delete(&channel).await;
        for tier in ["5000ms", "30000ms", "120000ms"] {
            let _ = channel
                .queue_delete(
                    format!("{}.retry.{tier}", topology.dispatch_queue()).as_str().into(),
                    Default::default(),
                )
                .await;
        }
    }
    Ok(())
}
