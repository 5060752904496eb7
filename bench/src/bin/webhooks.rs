//! Webhook throughput benchmark (webhook-worker issue). Publishes N
//! `phone_validation.validated` events to the events exchange and times the
//! in-process worker (release build, default settings unless overridden)
//! delivering them to a fast local axum receiver: total time, deliveries per
//! second, and event→receipt latency (the event's `occurredAt` to its arrival).
//! A second run adds events for a black-holed endpoint (accepts TCP, never
//! answers) and reports how much of the healthy rate is kept; a third runs
//! two workers on the healthy load and compares their rate with one's.
//! Every run has fresh queues and workers and starts once the machine has
//! settled (checkpoint, idle CPUs); the kinds alternate order over
//! `--rounds` (ABBA), and the summary compares medians.
//!
//! By default the clock starts when the bench starts publishing, so a run
//! is publisher and worker together (a run with a black hole publishes 20 %
//! more). With `--backlog`, every event is queued before the workers start
//! and the clock starts with them: the worker's own rate, and latency is
//! start→receipt.
//!
//!   RUST_LOG=warn cargo run --release -p bench --bin webhooks -- --events 10000 --black-holed 2000
//!   RUST_LOG=warn cargo run --release -p bench --bin webhooks -- --events 10000 --black-holed 2000 --backlog
//!   RUST_LOG=warn cargo run --release -p bench --bin webhooks -- --events 10000 --endpoints 3

use anyhow::Context;
use bench::webhook_receiver::{black_hole, receiver, report_all, wait_for_all};
use clap::Parser;
use futures_util::future::join_all;
use secrecy::SecretString;
use shared::amqp::{BasicProperties, Broker, Topology};
use shared::config::CommonConfig;
use shared::domain::PhoneValidation;
use shared::events::{Event, ValidationEvent, ValidationEventType};
use shared::process::Service;
use shared::ObjectId;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use webhook_worker::config::{parse_schedule, WebhookConfig, DEFAULT_SCHEDULE};
use webhook_worker::WebhookWorker;

/// The worker binary's allocator, so the in-process worker costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Events to the healthy endpoint in each run.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Events to the black-holed endpoint in the second run (0 skips it).
    #[arg(long, default_value_t = 2_000)]
    black_holed: usize,
    #[arg(long, default_value_t = 512)]
    prefetch: u16,
    #[arg(long, default_value_t = 32)]
    per_host: usize,
    #[arg(long, default_value_t = 1000)]
    host_wait_ms: u64,
    /// Also time two workers on the healthy load, against one.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    two_workers: bool,
    /// Rounds of runs; the summary gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Queue every event before the workers start, and time the workers alone.
    #[arg(long)]
    backlog: bool,
    /// Webhook endpoints (docs/contract.md §13) instead of the flow's URL:
    /// every event fans out to this many endpoints, each a fast receiver;
    /// the black-hole run adds one black-holed endpoint subscribed to
    /// everything (and no events of its own). 0: the flow's `webhookUrl`.
    #[arg(long, default_value_t = 0)]
    endpoints: usize,
}

/// A client, project and flow delivering to `url`; `count` validated records under it.
async fn validations(pool: &PgPool, url: &str, count: usize) -> anyhow::Result<Vec<PhoneValidation>> {
    let client = ObjectId::new();
    // Sealed as `otpctl` stores it: the worker refuses a plaintext secret.
    let sealed = testkit::api::webhook_secret_keys().seal(client.as_str(), "whsec_dGVzdA==")?;
    sqlx::query("INSERT INTO clients (id, name, webhook_secret) VALUES ($1, 'bench', $2)")
        .bind(&client)
        .bind(sealed)
        .execute(pool)
        .await?;
    let url = serde_json::json!({"webhookUrl": url});
    let (project, flow) = bench::rows::project_and_flow(pool, &client, url).await?;
    bench::rows::validated(pool, &client, &project, &flow, count).await
}

/// Publishes one `validated` event per record (pipelined, then all confirms awaited).
async fn publish(broker: &Broker, records: Vec<PhoneValidation>) -> anyhow::Result<()> {
    let exchange = broker.topology().exchange();
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let event = ValidationEvent::new(ValidationEventType::Validated, record);
        let payload = serde_json::to_vec(&event)?;
        let properties = BasicProperties::default().with_message_id(event.event_id().into());
        pending.push(
            broker
                .start_publish(&exchange, event.routing_key(), &payload, properties)
                .await?,
        );
    }
    for result in join_all(
        pending
            .into_iter()
            .map(|c| Broker::confirmed(c, "phone_validation.validated")),
    )
    .await
    {
        result?;
    }
    Ok(())
}

/// Builds a worker on `topology` (it consumes once run); it and the token that stops it.
async fn build_worker(
    args: &Args,
    database_url: &str,
    topology: &Topology,
) -> anyhow::Result<(WebhookWorker, CancellationToken)> {
    let cancel = CancellationToken::new();
    let config = WebhookConfig {
        common: CommonConfig {
            database_url: SecretString::from(database_url.to_owned()),
            amqp_url: SecretString::from(testkit::amqp_url()),
            amqp_prefix: String::new(),
            database_max_connections: 16,
        },
        secret_keys: testkit::api::webhook_secret_keys(),
        health_addr: "127.0.0.1:0".parse()?,
        allow_private: true,
        timeout: Duration::from_secs(10),
        retry_schedule: parse_schedule(DEFAULT_SCHEDULE).map_err(anyhow::Error::msg)?,
        prefetch: args.prefetch,
        per_host_concurrency: args.per_host,
        host_wait: Duration::from_millis(args.host_wait_ms),
        endpoints: webhook_worker::config::EndpointConfig::default(),
    };
    let worker = WebhookWorker::build(config, topology.clone(), cancel.clone())
        .await
        .context("while starting the worker")?;
    Ok((worker, cancel))
}

type Running = Vec<(tokio::task::JoinHandle<anyhow::Result<()>>, CancellationToken)>;

fn start(built: Vec<(WebhookWorker, CancellationToken)>) -> Running {
    built
        .into_iter()
        .map(|(worker, cancel)| (tokio::spawn(worker.run()), cancel))
        .collect()
}

/// What one timed run is: workers, and events for a black hole beside the healthy ones.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Healthy,
    BesideBlackHole,
    TwoWorkers,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy only",
            Kind::BesideBlackHole => "healthy, beside a black hole",
            Kind::TwoWorkers => "two workers, healthy only",
        }
    }
}

/// One timed run on fresh queues with fresh workers, so nothing deferred in
/// an earlier run comes back during this one. Returns the healthy delivery rate.
async fn timed_run(args: &Args, database_url: &str, pool: &PgPool, kind: Kind, first: bool) -> anyhow::Result<f64> {
    let topology = testkit::topology();
    let workers = if kind == Kind::TwoWorkers { 2 } else { 1 };
    let mut built = Vec::new();
    for _ in 0..workers {
        built.push(build_worker(args, database_url, &topology).await?);
    }
    let cancel = CancellationToken::new();
    let broker = Broker::start(
        SecretString::from(testkit::amqp_url()),
        topology.clone(),
        "bench",
        cancel.clone(),
    );
    anyhow::ensure!(
        broker.wait_connected(Duration::from_secs(10)).await,
        "RabbitMQ unreachable"
    );
    let mut dead = None;
    let (mut receivers, mut endpoint_client) = (Vec::new(), None);
    let healthy = if args.endpoints > 0 {
        let mut urls = Vec::new();
        for _ in 0..args.endpoints {
            let (url, arrivals) = receiver().await?;
            urls.push(url);
            receivers.push(arrivals);
        }
        let hole = match kind {
            Kind::BesideBlackHole => Some(dead.insert(black_hole().await?).url.clone()),
            _ => None,
        };
        let (client, records) =
            bench::webhook_endpoints::validations(pool, &urls, hole.as_deref(), args.events).await?;
        endpoint_client = Some(client);
        records
    } else {
        let (url, arrivals) = receiver().await?;
        receivers.push(arrivals);
        validations(pool, &url, args.events).await?
    };
    let black_holed = if kind == Kind::BesideBlackHole && args.endpoints == 0 {
        args.black_holed
    } else {
        0
    };
    let records = if black_holed > 0 {
        // Interleaved: one event for the black hole every `every` healthy ones.
        let hole = dead.insert(black_hole().await?);
        let mut blocked = validations(pool, &hole.url, black_holed).await?.into_iter();
        let every = (args.events / black_holed).max(1);
        let mut mixed = Vec::with_capacity(args.events + black_holed);
        for (n, record) in healthy.into_iter().enumerate() {
            if n % every == 0 {
                mixed.extend(blocked.next());
            }
            mixed.push(record);
        }
        mixed.extend(blocked);
        mixed
    } else {
        healthy
    };

    // A backlog is published before the clock starts and the workers
    // after; otherwise the workers wait for the events the clock times.
    let (mut built, mut records) = (Some(built), Some(records));
    let mut running = Vec::new();
    let publishing = Instant::now();
    if args.backlog {
        publish(&broker, records.take().unwrap_or_default()).await?;
    } else {
        running = start(built.take().unwrap_or_default());
    }
    let mut published = publishing.elapsed();
    bench::settle(pool).await;
    let deferred_before = bench::counter_by("webhook_deferred_total", "reason");
    let cpu_before = bench::cpu_by_command();
    let (started, clock) = (Instant::now(), chrono::Utc::now());
    if let Some(built) = built {
        running = start(built);
    }
    if let Some(records) = records {
        publish(&broker, records).await?;
        published = started.elapsed();
    }
    let took = wait_for_all(&receivers, args.events, started).await?;
    let cpu_after = bench::cpu_by_command();
    let deferred: Vec<String> = bench::counter_by("webhook_deferred_total", "reason")
        .into_iter()
        .map(|(reason, n)| (n - deferred_before.get(&reason).copied().unwrap_or(0.0), reason))
        .filter(|(n, _)| *n > 0.0)
        .map(|(n, reason)| format!("{n} {reason}"))
        .collect();
    let deferred = if deferred.is_empty() {
        "0".to_owned()
    } else {
        deferred.join(", ")
    };

    let rate = report_all(kind.label(), &receivers, args.events, took, clock);
    let when = if args.backlog {
        " before the workers started"
    } else {
        ""
    };
    println!(
        "  published {} events in {:.2} s{when}; {deferred} deferrals",
        args.events + black_holed,
        published.as_secs_f64()
    );
    if first {
        bench::print_cpu("  CPU", &cpu_before, &cpu_after);
    }
    // The workers stop before their queues go, so nothing from this run is
    // still at work in the next. The black hole closes its connections, so
    // the requests held there fail now instead of timing out.
    for (_, stop) in &running {
        stop.cancel();
    }
    drop(dead);
    for (handle, _) in running {
        match tokio::time::timeout(Duration::from_secs(30), handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "a worker stopped with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "a worker panicked"),
            Err(_) => tracing::warn!("a worker did not stop within 30 s"),
        }
    }
    cancel.cancel();
    if let Some(client) = endpoint_client {
        bench::webhook_endpoints::retire(pool, &client).await?;
    }
    // A run's queues go with it: RabbitMQ's file-handle budget (see README,
    // "Running the tests") does not hold many runs' quorum queues at once.
    let schedule = parse_schedule(DEFAULT_SCHEDULE).map_err(anyhow::Error::msg)?;
    testkit::delete_namespace(&topology, &schedule).await;
    Ok(rate)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    shared::telemetry::init();
    let (database_url, pool) = testkit::database().await;

    // Rounds alternate the order (ABBA), so neither kind always runs first.
    let mut kinds = vec![Kind::Healthy];
    if args.black_holed > 0 {
        kinds.push(Kind::BesideBlackHole);
    }
    if args.two_workers {
        kinds.push(Kind::TwoWorkers);
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for round in 0..args.rounds.max(1) {
        println!("round {}", round + 1);
        let mut order: Vec<usize> = (0..kinds.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let rate = timed_run(&args, &database_url, &pool, kinds[index], round == 0).await?;
            rates[index].push(rate);
        }
    }
    let stages: Vec<String> = bench::stage_means("webhook_stage_seconds")
        .into_iter()
        .map(|(stage, mean, count)| format!("{stage} {:.1} ms (n={count})", mean * 1000.0))
        .collect();
    println!("stage means over all runs: {}", stages.join(", "));

    let healthy = median(rates[0].clone());
    println!("median healthy-only rate: {healthy:.0}/s over {} runs", rates[0].len());
    for (index, kind) in kinds.iter().enumerate().skip(1) {
        let rate = median(rates[index].clone());
        let each: Vec<String> = rates[index]
            .iter()
            .zip(&rates[0])
            .map(|(r, h)| format!("{:.0} %", 100.0 * r / h))
            .collect();
        println!(
            "median {}: {rate:.0}/s, {:.0} % of healthy-only (per round: {})",
            kind.label(),
            100.0 * rate / healthy,
            each.join(", ")
        );
    }
    Ok(())
}
