//! What a burst did: codes at the provider stand-ins, callbacks absorbed,
//! the dispatchers' own metrics.

use crate::standins::{Callbacks, StandIns};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub async fn wait_for_codes(stand_ins: &StandIns, accepted: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let distinct = stand_ins.received.lock().map(|r| r.phones.len()).unwrap_or(0);
        if distinct >= accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn report_codes(stand_ins: &StandIns, results: &[(String, Instant, bool)], started: Instant, accepted: usize) {
    let arrivals = stand_ins.received.lock().map(|r| r.all.clone()).unwrap_or_default();
    let created_at: HashMap<&str, Instant> = results.iter().map(|(to, at, _)| (to.as_str(), *at)).collect();
    let mut first: HashMap<&str, (Instant, &'static str)> = HashMap::new();
    for (to, at, provider) in &arrivals {
        first.entry(to.as_str()).or_insert((*at, *provider));
    }
    let latencies: Vec<f64> = first
        .iter()
        .filter_map(|(to, (at, _))| created_at.get(to).map(|c| at.duration_since(*c).as_secs_f64() * 1000.0))
        .collect();
    let (p50, p99, max) = bench::percentiles(latencies);
    let last = arrivals.iter().map(|(_, at, _)| *at).max();
    let first_at = arrivals.iter().map(|(_, at, _)| *at).min();
    let window = match (first_at, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let by_provider = |name: &str| first.values().filter(|(_, p)| *p == name).count();
    println!(
        "SMS: {} distinct of {accepted}, {} duplicates; by provider: twilio {}, vonage {}",
        first.len(),
        arrivals.len() - first.len(),
        by_provider("twilio"),
        by_provider("vonage")
    );
    if let Ok(received) = stand_ins.received.lock() {
        if !received.throttled.is_empty() {
            println!(
                "throttled: {} numbers answered 429 (Retry-After {} s); shortest wait before a retry {}",
                received.throttled.len(),
                stand_ins.retry_after.as_secs(),
                received
                    .shortest_retry
                    .map_or("(none retried)".to_owned(), |s| format!("{} ms", s.as_millis()))
            );
        }
    }
    let total = last.map(|l| l.duration_since(started)).unwrap_or_default();
    println!("first create -> last SMS: {:.2} s", total.as_secs_f64());
    println!("create -> SMS latency: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    println!(
        "dispatch throughput: {:.0} SMS/s (first to last SMS)",
        first.len() as f64 / window.max(0.001)
    );
}

/// How many signed callbacks the API absorbed, and how fast, during the burst.
pub async fn report_callbacks(callbacks: &Callbacks, stand_ins: &StandIns, started: Instant) {
    let twilio = stand_ins
        .received
        .lock()
        .map(|r| r.all.iter().filter(|(_, _, p)| *p == "twilio").count())
        .unwrap_or(0) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while callbacks.ok.load(Ordering::Relaxed) + callbacks.failed.load(Ordering::Relaxed) < twilio
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, failed) = (
        callbacks.ok.load(Ordering::Relaxed),
        callbacks.failed.load(Ordering::Relaxed),
    );
    let took = callbacks
        .last
        .lock()
        .ok()
        .and_then(|l| *l)
        .map(|l| l.duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    println!(
        "callbacks: {ok} answered 2xx, {failed} not, the last {took:.2} s after the first create ({:.0}/s over the burst)",
        ok as f64 / took.max(0.001)
    );
}

/// The dispatchers' view: per-stage times, provider outcomes, breaker states.
pub async fn report_dispatchers(dispatchers: usize, http: &reqwest::Client) -> anyhow::Result<()> {
    for n in 0..dispatchers {
        let metrics = http
            .get(format!("http://127.0.0.1:{}/metrics", 19_191 + n))
            .send()
            .await?
            .text()
            .await?;
        let wanted = [
            "dispatch_stage_seconds_sum",
            "dispatch_stage_seconds_count",
            "provider_requests_total",
            "provider_breaker_state",
        ];
        for line in metrics.lines().filter(|l| wanted.iter().any(|w| l.starts_with(w))) {
            println!("dispatcher {n}: {line}");
        }
    }
    Ok(())
}
