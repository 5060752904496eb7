//! SMS pumping beside legitimate traffic, at scale (docs/contract.md §9): the real
//! API (with its fraud guard) and dispatcher in-process on a fresh database
//! and private queues, Twilio stood in for by a loopback server that notes
//! when each number's code arrives. Attackers fire creates at one prefix
//! (or a few) and never type a code; legitimate users, spread over many
//! prefixes, type theirs a second or two after it arrives. Reports the share
//! of attack codes that reached the provider, legitimate users refused, and
//! the time from the attack's start to the block.
//!
//!   cargo run --release -p bench --bin pumping -- --attack 5000 --legit 5000 --seconds 60

use api::fraud::GuardConfig;
use clap::Parser;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::dispatch::{code_in, form, Harness};
use testkit::TestApp;
use wiremock::matchers::method;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

#[derive(Parser)]
struct Args {
    /// Attack creates, spread evenly over the run.
    #[arg(long, default_value_t = 5_000)]
    attack: usize,
    /// Prefixes the attack is spread over (+507 626, 627, ...).
    #[arg(long, default_value_t = 1)]
    attack_prefixes: usize,
    /// Legitimate creates, spread evenly over the run and over 50 prefixes.
    #[arg(long, default_value_t = 5_000)]
    legit: usize,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// `FRAUD_GUARD_GRACE_SECONDS`.
    #[arg(long, default_value_t = 2)]
    grace: u64,
    /// `standard` or `max`.
    #[arg(long, default_value = "standard")]
    mode: String,
    /// `FRAUD_GUARD_INTERVAL_MS` (its default unless given).
    #[arg(long)]
    interval_ms: Option<u64>,
}

/// When each number's code reached the stand-in: E.164 → (code, when).
type Arrivals = Arc<Mutex<HashMap<String, (String, Instant)>>>;

struct Recorder(Arrivals);

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let fields = form(request);
        if let (Some(to), Some(body)) = (fields.get("To"), fields.get("Body")) {
            if let Ok(mut arrivals) = self.0.lock() {
                arrivals.insert(to.clone(), (code_in(body), Instant::now()));
            }
        }
        ResponseTemplate::new(201)
            .set_body_json(json!({"sid": format!("SM{}", shared::ObjectId::new()), "status": "queued"}))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let guard = GuardConfig {
        grace: Duration::from_secs(args.grace),
        block: Duration::from_secs(3600),
        window: Duration::from_secs(3600),
        interval: args
            .interval_ms
            .map_or(GuardConfig::default().interval, Duration::from_millis),
    };
    let app = TestApp::spawn_guarded(guard, None).await;
    app.wait_for_broker().await;
    let h = Arc::new(Harness::with_app(app).await);
    let arrivals: Arrivals = Arc::default();
    Mock::given(method("POST"))
        .respond_with(Recorder(arrivals.clone()))
        .mount(&h.twilio)
        .await;
    let mut config = h.dispatcher_config();
    config.prefetch = 256;
    h.start_dispatcher_with(config).await;
    let (project, flow) = h
        .app
        .project_and_flow(json!({"fraudGuard": args.mode, "resendCooldownSeconds": 0}))
        .await;

    let started = Instant::now();
    let run = Duration::from_secs(args.seconds);
    let refused_legit = Arc::new(AtomicUsize::new(0));
    let failed_validations = Arc::new(AtomicUsize::new(0));
    let attack_refused = Arc::new(AtomicUsize::new(0));
    let first_refusal: Arc<Mutex<Option<Duration>>> = Arc::default();

    let attack = {
        let (h, project, flow) = (h.clone(), project.clone(), flow.clone());
        let (refused, first_refusal) = (attack_refused.clone(), first_refusal.clone());
        let (count, prefixes) = (args.attack, args.attack_prefixes.max(1));
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for n in 0..count {
                tokio::time::sleep_until((started + run.mul_f64(n as f64 / count as f64)).into()).await;
                let (h, project, flow) = (h.clone(), project.clone(), flow.clone());
                let (refused, first_refusal) = (refused.clone(), first_refusal.clone());
                tasks.push(tokio::spawn(async move {
                    let phone = format!("{}{:05}", 626 + n % prefixes, n / prefixes);
                    let answer = h
                        .app
                        .post("/v2/phone-validations", TestApp::create_body(&project, &flow, &phone))
                        .await;
                    if answer.status == reqwest::StatusCode::FORBIDDEN {
                        refused.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_refusal.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert_with(|| started.elapsed());
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        })
    };
    let legit = {
        let (h, project, flow, arrivals) = (h.clone(), project.clone(), flow.clone(), arrivals.clone());
        let (refused, failed) = (refused_legit.clone(), failed_validations.clone());
        let count = args.legit;
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for n in 0..count {
                tokio::time::sleep_until((started + run.mul_f64(n as f64 / count as f64)).into()).await;
                let (h, project, flow, arrivals) = (h.clone(), project.clone(), flow.clone(), arrivals.clone());
                let (refused, failed) = (refused.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    // 50 prefixes from +507 650 on, apart from the attack's.
                    let phone = format!("{}{:05}", 650 + n % 50, n / 50);
                    let answer = h
                        .app
                        .post("/v2/phone-validations", TestApp::create_body(&project, &flow, &phone))
                        .await;
                    if answer.status != reqwest::StatusCode::OK {
                        refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    let to = format!("+507{phone}");
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let code = loop {
                        let arrived = arrivals
                            .lock()
                            .ok()
                            .and_then(|a| a.get(&to).map(|(code, _)| code.clone()));
                        if let Some(code) = arrived {
                            break Some(code);
                        }
                        if Instant::now() > deadline {
                            break None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    };
                    let Some(code) = code else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    // The user reads and types: 1 to 2 seconds.
                    tokio::time::sleep(Duration::from_millis(1000 + (n as u64 * 37) % 1000)).await;
                    let validated = h.app.validate(&phone, json!(code)).await;
                    if validated.status != reqwest::StatusCode::OK {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        })
    };
    attack.await?;
    legit.await?;
    let elapsed = started.elapsed();
    let attack_sent = arrivals
        .lock()
        .map(|a| {
            a.keys()
                .filter(|to| (0..args.attack_prefixes.max(1)).any(|p| to.starts_with(&format!("+507{}", 626 + p))))
                .count()
        })
        .unwrap_or(0);
    let blocks: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT prefix, reason, sent, validated FROM fraud_blocks ORDER BY blocked_at")
            .fetch_all(&h.app.pool)
            .await?;
    let first_refusal = *first_refusal.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "run {elapsed:.1?} ({}: grace {} s): attack {} creates over {} prefix(es), {} refused, {} codes sent ({:.1} %); \
         first refusal {:?} after the attack began ({:?} after the grace ended)",
        args.mode,
        args.grace,
        args.attack,
        args.attack_prefixes,
        attack_refused.load(Ordering::Relaxed),
        attack_sent,
        100.0 * attack_sent as f64 / args.attack.max(1) as f64,
        first_refusal,
        first_refusal.map(|t| t.saturating_sub(guard.grace)),
    );
    println!(
        "legitimate: {} creates, {} refused (false blocks), {} not validated",
        args.legit,
        refused_legit.load(Ordering::Relaxed),
        failed_validations.load(Ordering::Relaxed)
    );
    for (prefix, reason, sent, validated) in blocks {
        println!("block {prefix} ({reason}): {sent} judged sends, {validated} validated");
    }
    Ok(())
}
