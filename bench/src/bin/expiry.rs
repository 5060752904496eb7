//! Expiry bench: N validations (default 100,000) that expire in the same
//! instant, and the dispatchers' expiry sweeps (in-process, default
//! settings: `EXPIRY_SWEEP_MS` 5000, `EXPIRY_SWEEP_BATCH` 1000) failing them
//! all and publishing their `phone_validation_failed` events. Reports the
//! time from the expiry instant until every one is `failed` (`expired`),
//! until the outbox is drained, and until every event is on the
//! `otp.webhooks` queue (no webhook worker consumes it), and the CPU each
//! process used. The contract's target: all out within 60 s.
//!
//!   cargo run --release -p bench --bin expiry -- --validations 100000 [--dispatchers 2]

use clap::Parser;
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::dispatch::{created, Harness};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    validations: i64,
    /// In-process dispatchers, each with its own sweep.
    #[arg(long, default_value_t = 1)]
    dispatchers: usize,
    /// `EXPIRY_SWEEP_BATCH`.
    #[arg(long, default_value_t = 1000)]
    batch: i64,
    /// `EXPIRY_SWEEP_MS`.
    #[arg(long, default_value_t = 5000)]
    sweep_ms: u64,
    /// Seconds after the insert starts that they all expire (the insert must finish first).
    #[arg(long, default_value_t = 30.0)]
    lead_secs: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let h = Harness::new().await;
    h.sms_answers([], created("SMexpirybench")).await;
    let mut config = h.dispatcher_config();
    config.expiry_sweep = Duration::from_millis(args.sweep_ms);
    config.expiry_batch = args.batch;
    for _ in 0..args.dispatchers {
        h.start_dispatcher_with(config.clone()).await;
    }
    let (project, flow) = h.project_and_flow(json!({})).await;
    let template = h.create_id(&project, &flow, "62640000", json!({})).await;
    h.settled(&template).await;
    h.wait_outbox_empty().await;

    let inserting = Instant::now();
    let ids = testkit::lifecycle::expired_copies(&h.pool, &template, args.validations, "sent", -args.lead_secs).await;
    println!(
        "expiry: {} validations inserted in {:.2} s, all expiring {:.0} s after the insert began; {} dispatcher(s), batch {}, pause {} ms",
        ids.len(),
        inserting.elapsed().as_secs_f64(),
        args.lead_secs,
        args.dispatchers,
        args.batch,
        args.sweep_ms
    );
    let left: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (max(expires_at) - now()))::float8 FROM phone_validations WHERE id <> $1",
    )
    .bind(&template)
    .fetch_one(&h.pool)
    .await?;
    anyhow::ensure!(left > 0.0, "the insert took longer than --lead-secs: raise it");
    tokio::time::sleep(Duration::from_secs_f64(left)).await;
    let cpu_before = bench::cpu_by_command();
    let started = Instant::now();
    let n = ids.len() as i64;
    let queue = h.topology.webhook_queue();
    let (mut failed_at, mut drained_at, mut queued_at) = (None, None, None);
    while queued_at.is_none() || drained_at.is_none() || failed_at.is_none() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not done after 600 s");
        let failed = h.count("phone_validations WHERE failed_reason = 'expired'").await;
        if failed_at.is_none() && failed >= n {
            failed_at = Some(started.elapsed());
        }
        if failed_at.is_some() && drained_at.is_none() && h.count("outbox").await == 0 {
            drained_at = Some(started.elapsed());
        }
        if queued_at.is_none() && i64::from(ready_count(&h, &queue).await) >= n {
            queued_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = bench::cpu_used(&cpu_before, &bench::cpu_by_command());
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    println!(
        "from the expiry instant: all failed in {:.2} s, outbox drained in {:.2} s, all {} events on the queue in {:.2} s ({:.0} events/s)",
        secs(failed_at),
        secs(drained_at),
        n,
        secs(queued_at),
        n as f64 / secs(queued_at)
    );
    let cpu: Vec<String> = cpu.iter().take(6).map(|(c, t)| format!("{c} {t:.1}")).collect();
    println!("CPU-s: {}", cpu.join(", "));
    Ok(())
}

/// Messages ready in `queue` now.
async fn ready_count(h: &Harness, queue: &str) -> u32 {
    let Ok(channel) = h.amqp.create_channel().await else {
        return 0;
    };
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = channel
        .queue_declare(queue.into(), options, Default::default())
        .await
        .map(|q| q.message_count())
        .unwrap_or(0);
    let _ = channel.close(200, "counted".into()).await;
    count
}
